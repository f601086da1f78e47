"""Boundary-aware proposal features (BAPG II-D; DESIGN 3.4) for per-step detectors.

A TSC proposal's feature is the video feature Fv cut to its span. A per-step detector needs one vector per
step, so each step t gets, for every segmentation m (ascending), the mean of Fv over the segment that
contains t and t's relative position inside that segment:

    B[t] = concat_m [ mean_{i in seg_m(t)} Fv[i] ,  (t - a_m(t) + 0.5) / (b_m(t) - a_m(t)) ]    (C + 1 per m)

where seg_m(t) = [a_m(t), b_m(t)) is the segment of the m-change-point segmentation holding t. The relative
position runs from ~0 at a segment start to ~1 at its end, so a boundary shows as a jump: this is what the
detector learns boundaries from. A detector sees concat(Fv, B) and is otherwise unchanged (the plug-and-play
claim); `projection_dim` > 0 first maps the pooled part through a fixed random orthogonal projection
(seeded), to keep the input narrow on wide features.
"""
from __future__ import annotations

import numpy as np


def segment_bounds(change_points: np.ndarray, num_steps: int) -> np.ndarray:
    """[0, t1, ..., tm, T]: (m + 2,) int64 segment boundaries."""
    return np.concatenate([[0], np.asarray(change_points, dtype=np.int64), [num_steps]]).astype(np.int64)


def segment_pooling(features: np.ndarray, change_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step: the mean feature of its segment (T, C) and its relative position in the segment (T,)."""
    x = np.asarray(features, dtype=np.float64)  # (T, C)
    T = x.shape[0]
    bounds = segment_bounds(change_points, T)  # (K + 1,)
    csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])  # (T + 1, C) prefix sums
    lengths = np.diff(bounds)  # (K,)
    if np.any(lengths <= 0):
        raise ValueError(f"change points {np.asarray(change_points).tolist()} are not ascending in (0, {T})")
    means = (csum[bounds[1:]] - csum[bounds[:-1]]) / lengths[:, None]  # (K, C)
    seg = np.repeat(np.arange(len(lengths)), lengths)  # (T,) segment index of each step
    t = np.arange(T)
    position = (t - bounds[seg] + 0.5) / lengths[seg]  # (T,) in (0, 1)
    return means[seg].astype(np.float32), position.astype(np.float32)


def projection_matrix(in_dim: int, out_dim: int, seed: int = 0) -> np.ndarray:
    """A fixed (in_dim, out_dim) matrix with orthonormal columns (QR of a seeded Gaussian)."""
    if out_dim > in_dim:
        raise ValueError(f"projection_dim {out_dim} is larger than the feature width {in_dim}")
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(in_dim, out_dim)))
    return q.astype(np.float32)


def boundary_aware_features(features: np.ndarray, change_points: dict[int, np.ndarray],
                            projection_dim: int = 0, seed: int = 0) -> np.ndarray:
    """B of one video: (T, C) features and {m: change points} -> (T, len(ms) * (C' + 1)) float32, m ascending.

    C' = projection_dim if > 0, else C.
    """
    x = np.asarray(features, dtype=np.float32)  # (T, C)
    if projection_dim:
        x = x @ projection_matrix(x.shape[1], int(projection_dim), seed)  # (T, C')
    parts = []
    for m in sorted(change_points):
        pooled, position = segment_pooling(x, change_points[m])  # (T, C'), (T,)
        parts += [pooled, position[:, None]]
    return np.concatenate(parts, axis=1)


def proposal_features_to_store(video: str, *, features_store: str, proposals_store: str, store_path: str,
                               projection_dim: int = 0, seed: int = 0) -> None:
    """ProposalFeatures for one video: B from the cached change points, in the feature-store layout."""
    from stages.proposals import read_change_points
    from storage.features import read_features, write_features

    features, grid = read_features(features_store, video)  # (T, C)
    cps, attrs = read_change_points(proposals_store, video)
    if int(attrs["num_steps"]) != features.shape[0]:
        raise ValueError(f"video {video!r}: proposals were computed on {attrs['num_steps']} steps, "
                         f"the features have {features.shape[0]}")
    out = boundary_aware_features(features, cps, projection_dim, seed)
    width = out.shape[1] // len(cps)
    write_features(store_path, video, out, grid, ms=sorted(cps), layout=f"per m ascending: {width - 1} pooled "
                   "feature channels (segment mean of Fv) then 1 relative position in the segment",
                   projection_dim=int(projection_dim))
