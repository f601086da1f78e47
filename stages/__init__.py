"""Pure stage functions: one module per pipeline stage, no luigi inside.

Numba's on-disk cache needs a writable folder; the package folder may not be
(site-packages), so point it at the user cache unless the user chose one.
"""
import os

from tal_pipeline.storage.paths import cache_dir as _cache_dir

os.environ.setdefault("NUMBA_CACHE_DIR", str(_cache_dir() / "numba"))
