"""Boundary-aware proposal features (BAPG II-D; docs/method.md) for per-step detectors.

A TSC proposal's feature is the video feature Fv cut to its span. A per-step detector needs one vector per
step, so each step t gets, for every scale (in feature order, stages/bapg/scales.py), the mean of the
(projected) Fv over the segment [a, b) of that scale's segmentation that contains t, then four boundary
channels (BOUNDARY_CHANNELS):

    B[t] = concat over scales of
           [ mean_{i in [a, b)} P(Fv)[i]    C' channels: segment pooling of the (projected) features
             (t - a + 0.5) / (b - a)        relative position in the segment
             log(1 + t - a)                 steps since the segment's start
             log(1 + b - 1 - t)             steps to the segment's end
             clip(t - c + 0.5, -8, 8) ]     signed distance to the nearest change point c     (C' + 4 per scale)

A change point c lies between steps c - 1 and c, so the signed distance is negative before it and positive after;
it is +-8 when no change point is within 8 steps (the video's ends are not change points). The relative position
runs from ~0 at a segment start to ~1 at its end, so a boundary shows as a jump, and the log distances say how
near the segment's ends are on a scale where nearby differences matter most. A detector sees concat(Fv, B) and
is otherwise unchanged (the plug-and-play claim). P is the identity (C' = C) or, with `projection_dim` > 0, a
fixed random orthogonal projection (seeded) to C' = projection_dim channels, to keep the input narrow on wide
features.
"""
from __future__ import annotations

import numpy as np

# Seed of the fixed random projection: the pipeline's and single-video inference's B must match (stages.recipe).
PROJECTION_SEED = 0


def segment_bounds(change_points: np.ndarray, num_steps: int) -> np.ndarray:
    """[0, t1, ..., tm, T]: (m + 2,) int64 segment boundaries."""
    return np.concatenate([[0], np.asarray(change_points, dtype=np.int64), [num_steps]]).astype(np.int64)


def segment_pooling(features: np.ndarray, change_points: np.ndarray) -> np.ndarray:
    """Per step: the mean feature of its segment, (T, C) float32."""
    x = np.asarray(features, dtype=np.float64)  # (T, C)
    T = x.shape[0]
    bounds = segment_bounds(change_points, T)  # (K + 1,)
    csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])  # (T + 1, C) prefix sums
    lengths = np.diff(bounds)  # (K,)
    if np.any(lengths <= 0):
        raise ValueError(f"change points {np.asarray(change_points).tolist()} are not ascending in (0, {T})")
    means = (csum[bounds[1:]] - csum[bounds[:-1]]) / lengths[:, None]  # (K, C)
    seg = np.repeat(np.arange(len(lengths)), lengths)  # (T,) segment index of each step
    return means[seg].astype(np.float32)


def projection_matrix(in_dim: int, out_dim: int, seed: int = 0) -> np.ndarray:
    """A fixed (in_dim, out_dim) matrix with orthonormal columns (QR of a seeded Gaussian)."""
    if out_dim > in_dim:
        raise ValueError(f"projection_dim {out_dim} is larger than the feature width {in_dim}")
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(in_dim, out_dim)))
    return q.astype(np.float32)


BOUNDARY_CHANNELS = ("relative position", "log(1 + steps since segment start)", "log(1 + steps to segment end)",
                     "signed steps to the nearest change point (clipped to +-8)")
NEAREST_CLIP = 8.0


def boundary_channels(change_points: np.ndarray, num_steps: int) -> np.ndarray:
    """Per-step channels that say where the boundaries are: (T, 4) float32, see BOUNDARY_CHANNELS.

    For step t in segment [a, b): relative position (t - a + 0.5) / (b - a); log1p(t - a) and log1p(b - 1 - t)
    (how far the segment's start and end are, on a scale where nearby differences matter most); the signed
    distance to the nearest change point, negative before it and positive after, clipped to +-NEAREST_CLIP
    (video ends are not change points: +-NEAREST_CLIP when no change point is near).
    """
    bounds = segment_bounds(change_points, num_steps)  # (K + 1,)
    lengths = np.diff(bounds)  # (K,)
    if np.any(lengths <= 0):
        raise ValueError(f"change points {np.asarray(change_points).tolist()} are not ascending in (0, {num_steps})")
    seg = np.repeat(np.arange(len(lengths)), lengths)  # (T,)
    t = np.arange(num_steps)
    since, until = t - bounds[seg], bounds[seg + 1] - 1 - t  # (T,), (T,) steps
    cps = np.asarray(change_points, dtype=np.int64)
    if cps.size:
        # boundary at c - 0.5: a step after it (t >= c) is at +(t - c + 0.5), one before at -(c - 0.5 - t)
        j = np.clip(np.searchsorted(cps, t + 0.5), 1, cps.size) - 1  # (T,) last change point <= t (or the first)
        after = t - cps[j] + 0.5
        nxt = np.minimum(j + 1, cps.size - 1)
        before = t - cps[nxt] + 0.5
        nearest = np.where(np.abs(after) <= np.abs(before), after, before)
        nearest = np.clip(nearest, -NEAREST_CLIP, NEAREST_CLIP)
    else:
        nearest = np.full(num_steps, NEAREST_CLIP)
    position = (since + 0.5) / lengths[seg]
    return np.stack([position, np.log1p(since), np.log1p(until), nearest], axis=1).astype(np.float32)


def boundary_aware_features(features: np.ndarray, change_points, projection_dim: int = 0,
                            seed: int = PROJECTION_SEED) -> np.ndarray:
    """B of one video: (T, C) features and its scales -> (T, n_scales * (C' + 4)) float32.

    change_points: [(scale name, (m,) change points)] in feature order, or {m: change points} (m ascending).
    Per scale: the segment mean of the (projected) features, then the 4 boundary channels (BOUNDARY_CHANNELS).
    C' = projection_dim if > 0, else C.
    """
    x = np.asarray(features, dtype=np.float32)  # (T, C)
    if projection_dim:
        x = x @ projection_matrix(x.shape[1], int(projection_dim), seed)  # (T, C')
    scales = [c for _, c in change_points] if isinstance(change_points, list) else \
        [change_points[m] for m in sorted(change_points)]
    parts = []
    for cps in scales:
        pooled = segment_pooling(x, cps)  # (T, C')
        parts += [pooled, boundary_channels(cps, x.shape[0])]  # (T, C'), (T, 4)
    return np.concatenate(parts, axis=1)


def proposal_features_to_store(video: str, *, features_store: str, proposals_store: str, store_path: str,
                               projection_dim: int = 0, seed: int = PROJECTION_SEED) -> None:
    """ProposalFeatures for one video: B from the cached change points of every scale, in the feature-store layout."""
    from tal_pipeline.stages.bapg.proposals import read_change_points, read_scales
    from tal_pipeline.storage.features import read_features, write_features

    features, grid = read_features(features_store, video)  # (T, C)
    _, attrs = read_change_points(proposals_store, video)
    if int(attrs["num_steps"]) != features.shape[0]:
        raise ValueError(f"video {video!r}: proposals were computed on {attrs['num_steps']} steps, "
                         f"the features have {features.shape[0]}")
    scales = read_scales(proposals_store, video)
    out = boundary_aware_features(features, scales, projection_dim, seed)
    width = out.shape[1] // len(scales)
    write_features(store_path, video, out, grid, scales=[n for n, _ in scales],
                   change_points_per_scale=[int(len(c)) for _, c in scales],
                   layout=f"per scale: {width - len(BOUNDARY_CHANNELS)} pooled feature channels (segment mean of Fv) "
                          f"then {len(BOUNDARY_CHANNELS)} boundary channels: {', '.join(BOUNDARY_CHANNELS)}",
                   projection_dim=int(projection_dim))
