"""ImportFeatures: precomputed per-video features into the project's feature layout.

Sources: a folder of `<video>.npy` files, each (T, C) (the public THUMOS14 I3D features: 2048-d
RGB+flow, window 16, stride 4 at the video's fps), or an HDF5 file with one (T, C) dataset per
video. Each video is validated (2-D, numeric, finite, the expected width, a span on its time grid that matches
its annotated duration: stages/data/feature_span.py) and written as float32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tal_pipeline.stages.data.feature_span import check_feature_span
from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.storage.features import write_features


def source_file(source: str | Path, video: str) -> str:
    """Where a video's features come from, for messages: the .npy file or 'file.h5:/dataset'."""
    source = Path(source)
    return str(source / f"{video}.npy") if source.is_dir() else f"{source}:/{video}"


def read_source(source: str | Path, video: str) -> np.ndarray:
    """One video's raw features from a .npy folder or an HDF5 file; clear errors name the file."""
    source = Path(source)
    if source.is_dir():
        path = source / f"{video}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"video {video!r}: no feature file {path}")
        try:
            return np.load(path, allow_pickle=False)  # never unpickle user data
        except (ValueError, EOFError, OSError) as exc:
            raise ValueError(f"video {video!r}: {path} is not a plain numeric .npy array ({exc})") from None
    if source.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        import h5py

        if not source.is_file():
            raise FileNotFoundError(f"video {video!r}: feature file {source} does not exist")
        try:
            f = h5py.File(source, "r")
        except OSError as exc:
            raise ValueError(f"video {video!r}: {source} is not a readable HDF5 file ({exc})") from None
        with f:
            if video not in f:
                raise FileNotFoundError(f"video {video!r}: no dataset {video!r} in {source}")
            if not isinstance(f[video], h5py.Dataset):
                raise ValueError(f"video {video!r}: {source}:/{video} is a group, not a (T, C) dataset")
            return np.asarray(f[video][...])
    raise ValueError(f"feature source {source} is neither a folder of .npy files nor an HDF5 file")


def import_video_features(video: str, *, source: str, store_path: str, fps_by_video: dict[str, float], window: int,
                          stride: int, width: int = 0, durations: dict[str, float] | None = None,
                          video_fps: dict[str, float] | None = None) -> None:
    """Per-video worker of ImportFeatures (module-level: Dask may pickle it); fps_by_video gives each time grid.
    durations: annotated seconds per video, checked against the features' span (None: no check); video_fps: the
    videos' own frame rates, to name the preset grid that would fit."""
    if video not in fps_by_video:
        raise KeyError(f"video {video!r}: no fps in the annotations, so its features have no time grid")
    fps = float(fps_by_video[video])
    if not fps > 0:
        raise ValueError(f"video {video!r}: fps {fps} in the annotations is not positive, so its features have no "
                         "time grid")
    data = read_source(source, video)
    where = source_file(source, video)
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"video {video!r}: features in {where} have shape {data.shape}, expected a non-empty (T, C)")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise ValueError(f"video {video!r}: features in {where} have dtype {data.dtype}, expected real numbers")
    if width and data.shape[1] != width:
        raise ValueError(f"video {video!r}: features in {where} are {data.shape[1]} wide, expected {width} "
                         f"(the width of the other videos' features)")
    finite = np.isfinite(data)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(
            f"video {video!r}: features in {where} hold {int(np.isnan(data).sum())} NaN and "
            f"{int(np.isinf(data).sum())} inf value(s), in {len(bad_rows)} of {data.shape[0]} steps "
            f"(first at step {int(bad_rows[0])})"
        )
    if np.abs(data).max() > np.finfo(np.float32).max:
        raise ValueError(f"video {video!r}: features in {where} exceed the float32 range")
    if durations is not None:
        check_feature_span(video, data.shape[0], window, stride, fps, float(durations.get(video, float("nan"))),
                           float((video_fps or {}).get(video, float("nan"))))
    write_features(store_path, video, data, TimeGrid(fps, window, stride), source=str(source))


def infer_width(source: str | Path, videos: list[str]) -> int:
    """Feature width of the first video that can be read (the others must match it)."""
    for video in videos:
        try:
            data = read_source(source, video)
        except (FileNotFoundError, ValueError):
            continue
        if data.ndim == 2:
            return int(data.shape[1])
    raise ValueError(f"feature source {source}: no readable (T, C) features for any of {len(videos)} videos")
