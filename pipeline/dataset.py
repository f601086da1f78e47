"""The dataset a run works on: configured paths, or the built-in synthetic dataset."""
from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline import config
from pipeline.hashing import param_hash


@dataclass(frozen=True)
class DatasetSpec:
    videos: str  # folder of videos ("" when only features are given)
    annotations: str
    train_subset: str
    test_subset: str
    features: str  # "" unless precomputed features are imported
    synthetic: bool


def synthetic_params() -> dict:
    cfg = config.SyntheticConfig()
    return {"videos": cfg.videos, "seed": cfg.seed, "duration": cfg.duration, "size": cfg.size}


def synthetic_dir() -> Path:
    return Path(config.PathsConfig().workdir) / f"synthetic-{param_hash(synthetic_params())}"


def current() -> DatasetSpec:
    """Resolve [dataset] (and its command-line overrides); synthetic when nothing is configured."""
    cfg = config.DatasetConfig()
    if not cfg.annotations and not cfg.videos and not cfg.features:
        folder = synthetic_dir()
        return DatasetSpec(str(folder), str(folder / "annotations.json"), "train", "test", "", True)
    if not cfg.annotations:
        raise ValueError("[dataset] annotations is not set: --dataset-annotations FILE is needed with your own videos")
    if not cfg.videos and not cfg.features:
        raise ValueError("[dataset] needs videos (--dataset-videos DIR) or features (--dataset-features PATH)")
    train, test = config.dataset_preset().subsets  # the preset's subset names, unless given
    return DatasetSpec(cfg.videos, cfg.annotations, cfg.train_subset or train, cfg.test_subset or test, cfg.features,
                       False)


def _file_fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{path.name}:{st.st_size}:{st.st_mtime_ns}"


# Per-process cache of the folders' fingerprints (every task's output() hashes the dataset identity; a walk of a
# 20,000-video folder is 40,000 stat calls). Keyed on the resolved path; an entry is reused while the stats of
# every directory of the tree (and of the path itself when it is a file) are what they were at the walk: adding,
# removing or renaming a file anywhere in the tree changes its directory's mtime/ctime. Not seen: a file
# rewritten in place under the same name (its directory does not change) after the process hashed the folder;
# forget_identities() is for that (the generators of this project replace their files by rename, which is seen).
# A directory modified within RACY_NS of the walk is not cached: file-system timestamps are coarse, so a change
# in the same tick would leave them equal ("racy git").
RACY_NS = 1_000_000_000
_FOLDERS: dict[str, tuple[tuple, list[Path], dict]] = {}  # path -> (stats, watched paths, identity)
_CACHE = {"enabled": True, "calls": 0, "walks": 0}


def identity_counts() -> dict[str, int]:
    """{"calls": identity() calls of datasets with folders, "walks": folder walks} in this process so far: what the
    cache saves (tests and benchmarks)."""
    return {"calls": _CACHE["calls"], "walks": _CACHE["walks"]}


def forget_identities() -> None:
    """Drop the cached fingerprints: the next identity() walks every folder again."""
    _FOLDERS.clear()


@contextmanager
def identity_cache(enabled: bool):
    """Within the block, identity() uses the per-process cache (or not: every call walks; benchmarks compare)."""
    before = _CACHE["enabled"]
    _CACHE["enabled"] = enabled
    try:
        yield
    finally:
        _CACHE["enabled"] = before


def _stat_key(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _walk(path: Path) -> tuple[dict, list[Path]]:
    """{"path", "files", "fingerprint"} of a folder (or file) and the paths whose stats guard it."""
    _CACHE["walks"] += 1
    if path.is_dir():
        files, watched = [], [path]
        for p in sorted(path.rglob("*")):
            if p.is_dir():
                watched.append(p)
            elif p.is_file():
                files.append(p)
    else:
        files, watched = [path], [path]
    digest = hashlib.sha1("\n".join(_file_fingerprint(p) for p in files if p.exists()).encode()).hexdigest()[:16]
    return {"path": str(path), "files": len(files), "fingerprint": digest}, watched


def _folder_identity(path: Path) -> dict:
    if not _CACHE["enabled"]:
        return _walk(path)[0]
    cached = _FOLDERS.get(str(path))
    if cached is not None:
        keys, watched, ident = cached
        if tuple(_stat_key(p) for p in watched) == keys:
            return dict(ident)
    started = time.time_ns()
    ident, watched = _walk(path)
    keys = tuple(_stat_key(p) for p in watched)
    # Cached only when no directory changed within RACY_NS before the walk began (a change during the walk is such
    # a change too): a later change then moves some directory's timestamps.
    if all(k is not None and max(k[3], k[4]) < started - RACY_NS for k in keys):
        _FOLDERS[str(path)] = (keys, watched, ident)
    return dict(ident)


def identity(spec: DatasetSpec) -> dict:
    """What identifies the data: resolved paths and sizes+mtimes of every file (no content read).

    The synthetic dataset is identified by its generator parameters instead, so it is stable
    before it exists. The folders' fingerprints are cached per process (see _FOLDERS above).
    """
    if spec.synthetic:
        return {"synthetic": synthetic_params()}
    _CACHE["calls"] += 1
    ident = {"annotations": str(Path(spec.annotations).resolve()), "train": spec.train_subset.casefold(),
             "test": spec.test_subset.casefold()}
    for key in ("videos", "features"):
        value = getattr(spec, key)
        if value:
            ident[key] = _folder_identity(Path(value).resolve())
    ann = Path(spec.annotations)
    if ann.exists():
        ident["annotations_fingerprint"] = _file_fingerprint(ann)
    return ident
