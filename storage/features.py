"""Feature stores (ExtractFeatures, ImportFeatures, ProposalFeatures): one (T', C) float32 array per
video, time-chunked, with the time grid in its attributes so every reader maps steps to seconds
the same way (tal_pipeline.stages.data.timegrid)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.storage.zarr_store import ArtifactStore

TIME_CONVENTION = "feature i is centred at (i*stride + window/2)/fps seconds (tal_pipeline.stages.data.timegrid)"
CHUNK_STEPS = 1024


def write_features(store_path: str | Path, video: str, features: np.ndarray, grid: TimeGrid, **attrs) -> None:
    """Validate and write one video's features (T', C) as float32."""
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"video {video!r}: features must be a non-empty (T, C) array, got shape {features.shape}")
    if not np.isfinite(features).all():
        bad = int((~np.isfinite(features)).sum())
        raise ValueError(f"video {video!r}: features hold {bad} NaN/inf value(s)")
    meta = {**grid.to_attrs(), "time_convention": TIME_CONVENTION, **attrs}
    ArtifactStore(store_path).write_video(video, features.astype(np.float32, copy=False), CHUNK_STEPS,
                                          ["time", "feature"], meta)


def read_features(store_path: str | Path, video: str) -> tuple[np.ndarray, TimeGrid]:
    array = ArtifactStore(store_path).read(video)
    a = array.attrs
    return np.asarray(array[...], dtype=np.float32), TimeGrid.from_attrs(a, f"{store_path}: video {video!r}")


def load_feature_dict(store_path: str | Path, videos: list[str], extra_store: str | Path | None = None):
    """Features of `videos` as {video: (T, C) float32} and their time grids {video: TimeGrid}.

    extra_store: per-step features with the same time axis (BAPG ProposalFeatures), concatenated
    channel-wise to the video features, which is all a +BAPG detector sees differently.
    """
    store = ArtifactStore(store_path)
    available = set(store.videos())
    features, grids = {}, {}
    for video in videos:
        if video not in available:
            continue  # skipped upstream (listed in that stage's failure report)
        x, grid = read_features(store_path, video)
        if extra_store is not None:
            extra, _ = read_features(extra_store, video)
            if extra.shape[0] != x.shape[0]:
                raise ValueError(f"video {video!r}: {extra_store} has {extra.shape[0]} steps, "
                                 f"features have {x.shape[0]}")
            x = np.concatenate([x, extra], axis=1)
        features[video] = x
        grids[video] = grid
    return features, grids
