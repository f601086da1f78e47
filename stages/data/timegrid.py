"""The one mapping between feature indices and seconds, used by every stage.

Convention (as the public THUMOS14 I3D features): feature i covers frames
[i*stride, i*stride + window) of the frames sampled at `fps`, and is centred at
(i*stride + window/2) / fps seconds.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np


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


def video_grid(time_grid: Mapping, video: str) -> tuple[float, int, int]:
    """(fps, window, stride) for a video: time_grid is one {"fps","window","stride"} or {video: that}."""
    g = time_grid if "fps" in time_grid else time_grid.get(video)
    if g is None:
        raise ValueError(f"video {video!r}: no time grid (fps, window, stride) given for it")
    try:
        return float(g["fps"]), int(g["window"]), int(g["stride"])
    except KeyError as exc:
        raise ValueError(f"video {video!r}: time grid lacks {exc.args[0]!r} (needs fps, window, stride)") from None
