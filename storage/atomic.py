"""Atomic writes: a file or a folder appears complete under its final name or not at all, so a crash or a
concurrent reader never sees half of it. Temporaries are hidden siblings, `.<name>.<random>.tmp`.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _temporary(final: Path, length: int = 32) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:length]}.tmp")


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (text or bytes) to `path`: readers see the old content or the new, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextmanager
def atomic_folder(final: str | Path, tmp: str | Path | None = None, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a new empty temporary folder; on a clean exit rename it to `final`, on an exception remove it.

    tmp: where to build it (default: a hidden sibling of `final`; stale ones of crashed runs are removed first,
    so one writer per folder at a time). An existing `final` is replaced, or with keep_existing kept and the
    new copy dropped (a finished copy of the same content from an earlier attempt).
    """
    final = Path(final)
    if tmp is None:
        for stale in final.parent.glob(f".{final.name}.*.tmp"):  # from a crashed run
            shutil.rmtree(stale, ignore_errors=True)
        tmp = _temporary(final, 8)
    tmp = Path(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        if keep_existing:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
