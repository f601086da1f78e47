"""BAPG evidence calibrated per video (issue 29; docs/method.md §6): every BAPG channel replaced by its
within-video quantiles, so that a value means "where this step stands in its own video".

Why: a training video's B comes from a cross-fitted fold encoder, a test video's from the encoder trained on every
training video (docs/method.md §7). Their similarity matrices, and so the evidence curves read from them, may
differ in scale; the detector's standardisation uses the training split's statistics and cannot undo a shift
that only the test videos have. A rank is invariant to any increasing transform of a video's channel, so a
scale (or any monotone) difference between the encoders disappears. It is the fusion setting `rank_normalise`
(models.fusion.EXTENSIONS), applied to whole videos before the detector's standardisation, by training
(stages.detectors.training) and detection (stages.detectors.detection) alike: never to a crop or a window,
whose quantiles would differ from the video's.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import rankdata


def rank_normalise(channels: np.ndarray, valid: np.ndarray | None = None, video: str = "?") -> np.ndarray:
    """(T, K) -> (T, K) float32: each channel's within-video quantile in [0, 1] over the valid steps.

    A step's quantile is its average rank (tied values share the mean of their ranks) among the valid steps,
    0-based, over (n - 1): the smallest value gets 0, the largest 1, a constant channel 0.5 everywhere (as does a
    video of one valid step). valid: (T,) bool, the steps that are part of the video (None: all); the others
    (padding) take no part in the ranks and are set to 0. Non-finite values are refused, naming the video.
    """
    x = np.asarray(channels, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"video {video!r}: BAPG channels must be (T, K), got shape {x.shape}")
    valid = np.ones(x.shape[0], bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != (x.shape[0],):
        raise ValueError(f"video {video!r}: valid mask of shape {valid.shape} for {x.shape[0]} steps")
    out = np.zeros(x.shape, np.float32)
    v = x[valid]  # (n, K)
    n = v.shape[0]
    if n == 0:
        return out
    if not np.isfinite(v).all():
        raise ValueError(f"video {video!r}: BAPG channels contain NaN or inf")
    if n == 1:
        out[valid] = 0.5
        return out
    q = (rankdata(v, method="average", axis=0) - 1.0) / (n - 1)  # (n, K) ties share their mean rank
    out[valid] = q.astype(np.float32)
    return out


def calibrate_videos(features: Mapping[str, np.ndarray], bapg_channels: int, fusion: Mapping | None
                     ) -> Mapping[str, np.ndarray]:
    """{video: (T, C + K)} with the last K = bapg_channels channels rank-normalised per video when the fusion
    settings switch rank_normalise on; otherwise `features` itself (untouched, not copied)."""
    if not bapg_channels or not fusion or not fusion.get("rank_normalise", False):
        return features
    out = {}
    for video, x in features.items():
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] <= bapg_channels:
            raise ValueError(f"video {video!r}: features of shape {x.shape} do not hold {bapg_channels} BAPG "
                             "channels after the video features")
        b = rank_normalise(x[:, -bapg_channels:], video=video)  # (T, K)
        out[video] = np.concatenate([x[:, :-bapg_channels].astype(np.float32, copy=False), b], axis=1)
    return out
