"""The dataset a run works on: configured paths, or the built-in synthetic dataset."""
from __future__ import annotations

import hashlib
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
    return DatasetSpec(cfg.videos, cfg.annotations, cfg.train_subset, cfg.test_subset, cfg.features, False)


def _file_fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{path.name}:{st.st_size}:{st.st_mtime_ns}"


def identity(spec: DatasetSpec) -> dict:
    """What identifies the data: resolved paths and sizes+mtimes of every file (no content read).

    The synthetic dataset is identified by its generator parameters instead, so it is stable
    before it exists.
    """
    if spec.synthetic:
        return {"synthetic": synthetic_params()}
    ident = {"annotations": str(Path(spec.annotations).resolve()), "train": spec.train_subset.casefold(),
             "test": spec.test_subset.casefold()}
    for key in ("videos", "features"):
        value = getattr(spec, key)
        if not value:
            continue
        path = Path(value).resolve()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha1("\n".join(_file_fingerprint(p) for p in files if p.exists()).encode()).hexdigest()[:16]
        ident[key] = {"path": str(path), "files": len(files), "fingerprint": digest}
    ann = Path(spec.annotations)
    if ann.exists():
        ident["annotations_fingerprint"] = _file_fingerprint(ann)
    return ident
