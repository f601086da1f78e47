"""The one mapping between feature indices and seconds, used by every stage.

Convention (as the public THUMOS14 I3D features): feature i covers frames
[i*stride, i*stride + window) of the frames sampled at `fps`, and is centred at
(i*stride + window/2) / fps seconds.

In memory a video's grid is a `TimeGrid`; as a dict {"fps", "window", "stride"} it exists only where it is
stored (Zarr attributes, checkpoint configs, JSON), written by `TimeGrid.to_attrs` and read by
`TimeGrid.from_attrs`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

GRID_KEYS = ("fps", "window", "stride")


def num_windows(num_frames: int, window: int, stride: int) -> int:
    """Number of full windows of `window` frames advancing by `stride` frames."""
    if num_frames < window:
        return 0
    return (num_frames - window) // stride + 1


def feature_to_seconds(index, fps: float, window: int, stride: int):
    """Centre time in seconds of feature `index` (scalar or array, may be fractional)."""
    return (np.asarray(index, dtype=np.float64) * stride + window / 2.0) / fps


def seconds_to_feature(seconds, fps: float, window: int, stride: int):
    """Inverse of feature_to_seconds: fractional feature index whose centre is at `seconds`."""
    return (np.asarray(seconds, dtype=np.float64) * fps - window / 2.0) / stride


def feature_step_seconds(fps: float, stride: int) -> float:
    """Seconds between two consecutive features."""
    return stride / fps


@dataclass(frozen=True)
class TimeGrid:
    """How a video's feature steps map to seconds: frames sampled at `fps`, windows of `window` frames every
    `stride` frames."""

    fps: float
    window: int
    stride: int

    def __post_init__(self):
        # plain Python numbers: they are written to JSON as they are, and equal grids compare equal
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "window", int(self.window))
        object.__setattr__(self, "stride", int(self.stride))

    @classmethod
    def from_attrs(cls, attrs: Mapping, where: str = "time grid") -> TimeGrid:
        """The grid stored in a mapping that holds fps, window and stride (Zarr attributes, a config)."""
        missing = [k for k in GRID_KEYS if k not in attrs]
        if missing:
            raise ValueError(f"{where}: lacks {missing[0]!r} (a time grid needs fps, window, stride)")
        return cls(attrs["fps"], attrs["window"], attrs["stride"])

    def to_attrs(self) -> dict:
        """{"fps", "window", "stride"}: what stores and configs record."""
        return {"fps": self.fps, "window": self.window, "stride": self.stride}

    @property
    def step_seconds(self) -> float:
        """Seconds between two consecutive features."""
        return feature_step_seconds(self.fps, self.stride)

    def span_seconds(self, num_steps: int) -> float:
        """Seconds spanned by `num_steps` features (num_steps * stride / fps): what change-point rates count per
        minute of."""
        return num_steps * self.stride / self.fps

    def to_seconds(self, index):
        """Centre time in seconds of feature `index` (feature_to_seconds)."""
        return feature_to_seconds(index, self.fps, self.window, self.stride)

    def to_steps(self, seconds):
        """Fractional feature index centred at `seconds` (seconds_to_feature)."""
        return seconds_to_feature(seconds, self.fps, self.window, self.stride)


def video_grid(time_grid: TimeGrid | Mapping[str, TimeGrid], video: str) -> TimeGrid:
    """The grid of a video: time_grid is one TimeGrid for every video or {video: TimeGrid}."""
    if isinstance(time_grid, TimeGrid):
        return time_grid
    grid = time_grid.get(video)
    if grid is None:
        raise ValueError(f"video {video!r}: no time grid (fps, window, stride) given for it")
    if not isinstance(grid, TimeGrid):
        raise TypeError(f"video {video!r}: time grid must be a TimeGrid, got {type(grid).__name__} "
                        "(a stored one is read with TimeGrid.from_attrs)")
    return grid
