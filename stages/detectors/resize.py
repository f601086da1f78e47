"""Fixed-length detector inputs (ActivityNet recipe): each video's features linearly resized to `length` steps
and its TimeGrid resampled with them (pure numpy).

The interpolation is that of torch.nn.functional.interpolate(mode="linear", align_corners=False): resized step j
reads the native fractional index x = max(0, (j + 0.5) * T / length - 0.5), lerped between floor(x) and the next
step (the last step repeated past the end). `TimeGrid.resampled` places step j at the centre time of native index
(j + 0.5) * T / length - 0.5, so seconds -> resized steps -> seconds is the identity and a detection in resized
steps maps back to the seconds of the native grid. BAPG channels concatenated after the features are resized with
them, on the same grid.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tal_pipeline.stages.data.timegrid import TimeGrid, video_grid


def resize_features(features: np.ndarray, length: int) -> np.ndarray:
    """(T, C) -> (length, C) float32 by linear interpolation (align_corners=False; see the module docstring)."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"resize_features expects (T, C) with T >= 1, got shape {x.shape}")
    if length < 1:
        raise ValueError(f"resize_features: length must be >= 1, got {length}")
    t = x.shape[0]
    if t == length:
        return x.astype(np.float32, copy=False)
    src = np.maximum((np.arange(length, dtype=np.float64) + 0.5) * (t / length) - 0.5, 0.0)  # (length,)
    lo = np.minimum(np.floor(src).astype(np.int64), t - 1)
    hi = np.minimum(lo + 1, t - 1)
    w = (src - lo)[:, None]
    x64 = x.astype(np.float64, copy=False)
    return ((1.0 - w) * x64[lo] + w * x64[hi]).astype(np.float32)


def resize_videos(features: Mapping[str, np.ndarray], time_grid: TimeGrid | Mapping[str, TimeGrid], length: int
                  ) -> tuple[dict[str, np.ndarray], dict[str, TimeGrid]]:
    """Every video's features (T_v, C) resized to (length, C), and {video: its grid resampled from T_v steps}."""
    out, grids = {}, {}
    for video, arr in features.items():
        grid = video_grid(time_grid, video)
        out[video] = resize_features(arr, length)
        grids[video] = grid.resampled(int(np.asarray(arr).shape[0]), int(length))
    return out, grids
