"""ImportFeatures: precomputed per-video features into the project's feature layout.

Sources: a folder of `<video>.npy` files, each (T, C) (the public THUMOS14 I3D features: 2048-d
RGB+flow, window 16, stride 4 at the video's fps), or an HDF5 file with one (T, C) dataset per
video. Each video is validated (2-D, numeric, finite, the expected width) and written as float32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from storage.features import TimeGrid, write_features


def read_source(source: str | Path, video: str) -> np.ndarray:
    """One video's raw features from a .npy folder or an HDF5 file; clear errors name the file."""
    source = Path(source)
    if source.is_dir():
        path = source / f"{video}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"video {video!r}: no feature file {path}")
        try:
            return np.load(path, allow_pickle=False)  # never unpickle user data
        except ValueError as exc:
            raise ValueError(f"video {video!r}: {path} is not a plain numeric .npy array ({exc})") from None
    if source.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        import h5py

        with h5py.File(source, "r") as f:
            if video not in f:
                raise FileNotFoundError(f"video {video!r}: no dataset {video!r} in {source}")
            return np.asarray(f[video][...])
    raise ValueError(f"feature source {source} is neither a folder of .npy files nor an HDF5 file")


def import_video_features(video: str, *, source: str, store_path: str, fps_by_video: dict[str, float], window: int,
                          stride: int, width: int = 0) -> None:
    """Per-video worker of ImportFeatures (module-level: Dask may pickle it); fps_by_video gives each time grid."""
    fps = float(fps_by_video[video])
    data = read_source(source, video)
    if data.ndim != 2:
        raise ValueError(f"video {video!r}: features in {source} have shape {data.shape}, expected (T, C)")
    if not np.issubdtype(data.dtype, np.number):
        raise ValueError(f"video {video!r}: features in {source} have dtype {data.dtype}, expected numbers")
    if width and data.shape[1] != width:
        raise ValueError(f"video {video!r}: features in {source} are {data.shape[1]} wide, expected {width}")
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
