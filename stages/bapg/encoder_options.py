"""Boundary options of the contrastive encoder (stages/bapg/encoder.py; docs/method.md §2), all off by default.

- Temporal context (`context` = k, odd >= 3): Phi sees the k steps centred on each step. `context_windows`
  builds those windows, for training (the sampled steps) and for embedding (every step of a video) alike, so a
  step's embedding is the same whichever path computed it. Edge padding: a window reaching past the video's
  first or last step repeats that edge step's features (replicate padding), i.e. window row j of step t holds
  the features of step clip(t - k//2 + j, 0, T - 1).
- Distance-weighted hard negatives (`hard_negative_tau` = tau seconds > 0): the hard negative of an instance is
  drawn with probability w_i = exp(-d_i / tau) / sum_j exp(-d_j / tau) instead of uniformly, where d_i is the
  time from hard negative i's centre to the instance boundary on its side (start - centre before the instance,
  centre - end after it; never below 0). Drawing with probability w_i has the same expected loss as weighting a
  uniformly drawn negative by H w_i (H = pool size), with less variance: the warm-up and cool-down steps next to
  the action's start and end count most.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tal_pipeline.stages.bapg.sample_pools import InstancePool
from tal_pipeline.stages.data.timegrid import TimeGrid, video_grid


def context_windows(features: np.ndarray, steps: np.ndarray, context: int) -> np.ndarray:
    """Windows of `context` steps centred on `steps` of one video: features (T, C), steps (N,) -> (N, k, C).

    Steps past either end of the video repeat its first / last step (replicate padding)."""
    x = np.asarray(features)
    steps = np.asarray(steps, dtype=np.int64).reshape(-1)  # (N,)
    k = int(context)
    if k < 1 or k % 2 == 0:
        raise ValueError(f"context windows need an odd number of steps >= 1, got {context}")
    if steps.size and (steps.min() < 0 or steps.max() >= x.shape[0]):
        raise ValueError(f"steps must lie in [0, {x.shape[0]}), got {steps.min()} .. {steps.max()}")
    idx = np.clip(steps[:, None] + np.arange(-(k // 2), k // 2 + 1)[None, :], 0, x.shape[0] - 1)  # (N, k)
    return np.asarray(x[idx.reshape(-1)]).reshape(steps.size, k, *x.shape[1:])


def gather_windows(arrays: Sequence[np.ndarray], vids: np.ndarray, steps: np.ndarray, context: int) -> np.ndarray:
    """Windows of steps[i] of video vids[i] (training batches): -> (N, k, C), rows in the order given."""
    vids, steps = np.asarray(vids, np.int64), np.asarray(steps, np.int64)
    out = np.empty((steps.size, int(context), *np.shape(arrays[0])[1:]), np.float32)
    for v in np.unique(vids).tolist():
        rows = np.flatnonzero(vids == v)
        out[rows] = context_windows(arrays[v], steps[rows], context)
    return out


def boundary_distances(pool: InstancePool, grid: TimeGrid) -> np.ndarray:
    """(H,) seconds from each hard negative's centre to the instance's start (before it) or end (after it)."""
    centres = grid.to_seconds(pool.hard_negative)  # (H,)
    first = int(pool.positive[0]) if pool.positive.size else 0
    before = pool.hard_negative < first
    d = np.where(before, pool.start - centres, centres - pool.end)
    return np.maximum(d, 0.0).astype(np.float64)


def hard_negative_weights(pool: InstancePool, grid: TimeGrid, tau: float) -> np.ndarray | None:
    """(H,) probabilities exp(-d / tau) normalised over the instance's hard pool; None for tau = 0 (uniform)."""
    tau = float(tau)
    if not np.isfinite(tau) or tau < 0:
        raise ValueError(f"hard_negative_tau must be >= 0 seconds, got {tau}")
    if tau == 0 or pool.hard_negative.size == 0:
        return None
    d = boundary_distances(pool, grid)
    w = np.exp(-(d - d.min()) / tau)  # shifted by the smallest distance: the same ratios, no underflow
    return w / w.sum()


def negative_weights(instances: Sequence[InstancePool], time_grid: TimeGrid | Mapping[str, TimeGrid],
                     tau: float) -> list[np.ndarray | None]:
    """hard_negative_weights of every instance, in order (None everywhere for tau = 0)."""
    return [hard_negative_weights(p, video_grid(time_grid, p.video), tau) for p in instances]
