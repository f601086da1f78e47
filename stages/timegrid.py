"""The one mapping between feature indices and seconds, used by every stage.

Convention (as the public THUMOS14 I3D features): feature i covers frames
[i*stride, i*stride + window) of the frames sampled at `fps`, and is centred at
(i*stride + window/2) / fps seconds.
"""
from __future__ import annotations

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
