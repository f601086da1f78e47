"""The one mapping between feature indices and seconds, used by every stage.

Convention (as the public THUMOS14 I3D features): feature i covers frames
[i*stride, i*stride + window) of the frames sampled at `fps`, and is centred at
(i*stride + window/2) / fps seconds.

A grid may be resampled (`TimeGrid.resampled`): the features of a video with `source_steps` native steps
linearly interpolated to `steps` steps (as `torch.nn.functional.interpolate(mode="linear",
align_corners=False)` does, and stages.detectors.resize): resized step j sits at the native fractional index
(j + 0.5) * source_steps / steps - 0.5, so its centre time is the native grid's at that index, and seconds map
to resized steps and back through the same affine maps.

In memory a video's grid is a `TimeGrid`; as a dict {"fps", "window", "stride"} it exists only where it is
stored (Zarr attributes, checkpoint configs, JSON), written by `TimeGrid.to_attrs` and read by
`TimeGrid.from_attrs`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

GRID_KEYS = ("fps", "window", "stride")
RESAMPLE_KEYS = ("source_steps", "steps")


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
    `stride` frames; resampled (steps > 0) when the video's `source_steps` native features were resized to
    `steps` (see the module docstring)."""

    fps: float
    window: int
    stride: int
    source_steps: int = 0  # 0 (with steps 0): the native grid
    steps: int = 0

    def __post_init__(self):
        # plain Python numbers: they are written to JSON as they are, and equal grids compare equal
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "window", int(self.window))
        object.__setattr__(self, "stride", int(self.stride))
        object.__setattr__(self, "source_steps", int(self.source_steps))
        object.__setattr__(self, "steps", int(self.steps))
        if (self.source_steps > 0) != (self.steps > 0) or self.source_steps < 0 or self.steps < 0:
            raise ValueError(f"time grid: source_steps and steps are both > 0 (resampled) or both 0, got "
                             f"{self.source_steps} and {self.steps}")

    @classmethod
    def from_attrs(cls, attrs: Mapping, where: str = "time grid") -> TimeGrid:
        """The grid stored in a mapping that holds fps, window and stride (Zarr attributes, a config), and
        source_steps and steps for a resampled one."""
        missing = [k for k in GRID_KEYS if k not in attrs]
        if missing:
            raise ValueError(f"{where}: lacks {missing[0]!r} (a time grid needs fps, window, stride)")
        return cls(attrs["fps"], attrs["window"], attrs["stride"], *(attrs.get(k, 0) for k in RESAMPLE_KEYS))

    def to_attrs(self) -> dict:
        """{"fps", "window", "stride"} (+ "source_steps", "steps" when resampled): what stores and configs record."""
        out = {"fps": self.fps, "window": self.window, "stride": self.stride}
        if self.is_resampled:
            out.update(source_steps=self.source_steps, steps=self.steps)
        return out

    @property
    def is_resampled(self) -> bool:
        return self.steps > 0

    def resampled(self, source_steps: int, steps: int) -> TimeGrid:
        """The grid of this (native) grid's `source_steps` features linearly resized to `steps` steps."""
        if self.is_resampled:
            raise ValueError("time grid: already resampled; resample the native grid")
        if source_steps < 1 or steps < 1:
            raise ValueError(f"time grid: cannot resample {source_steps} steps to {steps}")
        return TimeGrid(self.fps, self.window, self.stride, source_steps, steps)

    def native(self) -> TimeGrid:
        """The grid before resampling (itself when native)."""
        return TimeGrid(self.fps, self.window, self.stride)

    @property
    def _ratio(self) -> float:
        """Native steps per resized step (1 for a native grid)."""
        return self.source_steps / self.steps if self.is_resampled else 1.0

    @property
    def step_seconds(self) -> float:
        """Seconds between two consecutive features."""
        return feature_step_seconds(self.fps, self.stride) * self._ratio

    def span_seconds(self, num_steps: int) -> float:
        """Seconds spanned by `num_steps` features (num_steps * stride / fps on a native grid): what change-point
        rates count per minute of."""
        return num_steps * self.stride / self.fps * self._ratio

    def to_seconds(self, index):
        """Centre time in seconds of feature `index` (feature_to_seconds; on a resampled grid, of the native
        fractional index that resized step `index` was interpolated at)."""
        if self.is_resampled:
            index = (np.asarray(index, dtype=np.float64) + 0.5) * self._ratio - 0.5
        return feature_to_seconds(index, self.fps, self.window, self.stride)

    def to_steps(self, seconds):
        """Fractional feature index centred at `seconds` (seconds_to_feature; the exact inverse of to_seconds)."""
        index = seconds_to_feature(seconds, self.fps, self.window, self.stride)
        if self.is_resampled:
            index = (index + 0.5) / self._ratio - 0.5
        return index


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
