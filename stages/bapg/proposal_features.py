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

Channel groups. B is made of switchable groups (GROUPS), always in this order whatever order they are asked in:

    "pooled"    per scale: the C' segment-pooled (projected) features           (the block above, first part)
    "boundary"  per scale: the 4 boundary channels                              (the block above, second part)
    "novelty"   the checkerboard novelty of S at widths NOVELTY_WIDTHS         (3 channels; boundary_evidence)
    "strength"  per scale: the change-point strength curve on S, normalised     (1 channel per scale)

"pooled" and "boundary" interleave per scale as above (the default, ("pooled", "boundary"), is the B of the block
above); "novelty" and then "strength" follow, once for all scales. novelty and strength
read the similarity matrix S (the one TSC ran on; for the raw and oracle sources, see the ProposalFeatures task)
in blocks (stages/bapg/boundary_evidence.py): the value at step t describes the boundary between t-1 and t.
`channel_layout` names every channel; the store records it with the groups.
"""
from __future__ import annotations

import numpy as np

# Seed of the fixed random projection: the pipeline's and single-video inference's B must match
# (stages.detectors.recipe).
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


GROUPS = ("pooled", "boundary", "novelty", "strength")  # the channel groups of B, in channel order
DEFAULT_GROUPS = ("pooled", "boundary")  # the pipeline's default: the paper's B
SIMILARITY_GROUPS = ("novelty", "strength")  # the groups that read S
NOVELTY_WIDTHS = (2, 4, 8)  # steps on each side of the boundary (boundary_evidence.novelty_curves)


def normalise_groups(groups, where: str = "channel groups") -> tuple[str, ...]:
    """The channel groups as a tuple in GROUPS order (duplicates dropped); ValueError for an unknown name or none."""
    names = [groups] if isinstance(groups, str) else [str(g) for g in groups]
    unknown = [g for g in names if g not in GROUPS]
    if unknown:
        raise ValueError(f"{where}: unknown channel group(s) {unknown}; known: {list(GROUPS)}")
    if not names:
        raise ValueError(f"{where}: at least one channel group is needed, from {list(GROUPS)}")
    return tuple(g for g in GROUPS if g in names)


def needs_similarity(groups) -> bool:
    """Whether these groups read the similarity matrix S (novelty, strength)."""
    return any(g in SIMILARITY_GROUPS for g in normalise_groups(groups))


def channel_layout(scale_names: list[str], groups=DEFAULT_GROUPS, pooled_width: int = 0) -> list[dict]:
    """Every channel block of B in order: [{"group", "scale" (None for novelty), "start", "stop", "names"}]."""
    groups = normalise_groups(groups)
    blocks = []
    for scale in scale_names:
        if "pooled" in groups:
            blocks.append(("pooled", scale, [f"{scale} pooled feature {i}" for i in range(int(pooled_width))]))
        if "boundary" in groups:
            blocks.append(("boundary", scale, [f"{scale} {name}" for name in BOUNDARY_CHANNELS]))
    if "novelty" in groups:
        blocks.append(("novelty", None, [f"novelty of S, width {k}" for k in NOVELTY_WIDTHS]))
    if "strength" in groups:
        blocks += [("strength", scale, [f"{scale} change-point strength (normalised TSC cost rise)"])
                   for scale in scale_names]
    out, start = [], 0
    for group, scale, names in blocks:
        out.append({"group": group, "scale": scale, "start": start, "stop": start + len(names), "names": names})
        start += len(names)
    return out


def boundary_aware_features(features: np.ndarray, change_points, projection_dim: int = 0,
                            seed: int = PROJECTION_SEED, groups=DEFAULT_GROUPS, similarity=None,
                            name: str = "similarity") -> np.ndarray:
    """B of one video: (T, C) features and its scales -> (T, channels) float32 in the order of channel_layout.

    change_points: [(scale name, (m,) change points)] in feature order, or {m: change points} (m ascending).
    Default groups: per scale, the segment mean of the (projected) features, then the 4 boundary channels
    (BOUNDARY_CHANNELS): (T, n_scales * (C' + 4)), C' = projection_dim if > 0, else C. similarity: (T, T) S
    (numpy or Zarr, read in blocks), needed by the novelty and strength groups.
    """
    groups = normalise_groups(groups)
    x = np.asarray(features, dtype=np.float32)  # (T, C)
    T = x.shape[0]
    if projection_dim and "pooled" in groups:
        x = x @ projection_matrix(x.shape[1], int(projection_dim), seed)  # (T, C')
    scales = [c for _, c in change_points] if isinstance(change_points, list) else \
        [change_points[m] for m in sorted(change_points)]
    parts = []
    for cps in scales:
        if "pooled" in groups:
            parts.append(segment_pooling(x, cps))  # (T, C')
        if "boundary" in groups:
            parts.append(boundary_channels(cps, T))  # (T, 4)
    if needs_similarity(groups):
        from tal_pipeline.stages.bapg.boundary_evidence import novelty_curves, strength_curves

        if similarity is None:
            raise ValueError(f"{name}: channel groups {[g for g in groups if g in SIMILARITY_GROUPS]} need the "
                             "similarity matrix S")
        if tuple(similarity.shape) != (T, T):
            raise ValueError(f"{name}: similarity matrix of shape {tuple(similarity.shape)} for {T} feature steps")
        if "novelty" in groups:
            parts.append(novelty_curves(similarity, NOVELTY_WIDTHS, name=name))  # (T, 3)
        if "strength" in groups:
            parts.append(strength_curves(similarity, scales, normalise=True, name=name))  # (T, n_scales)
    return np.concatenate(parts, axis=1).astype(np.float32, copy=False)


def proposal_features_to_store(video: str, *, features_store: str, proposals_store: str, store_path: str,
                               projection_dim: int = 0, seed: int = PROJECTION_SEED, groups=DEFAULT_GROUPS,
                               similarity_store: str | None = None) -> None:
    """ProposalFeatures for one video: B from the cached change points of every scale, in the feature-store layout.

    similarity_store: the SimilarityMatrices store, read when the groups include novelty or strength."""
    from tal_pipeline.stages.bapg.proposal_store import read_change_points, read_scales
    from tal_pipeline.storage.features import read_features, write_features
    from tal_pipeline.storage.zarr_store import ArtifactStore

    groups = normalise_groups(groups)
    features, grid = read_features(features_store, video)  # (T, C)
    _, attrs = read_change_points(proposals_store, video)
    if int(attrs["num_steps"]) != features.shape[0]:
        raise ValueError(f"video {video!r}: proposals were computed on {attrs['num_steps']} steps, "
                         f"the features have {features.shape[0]}")
    scales = read_scales(proposals_store, video)
    similarity = None
    if needs_similarity(groups):
        if similarity_store is None:
            raise ValueError(f"video {video!r}: channel groups {list(groups)} need a similarity store")
        similarity = ArtifactStore(similarity_store).read(video)  # (T, T) float16 Zarr, read in blocks
    out = boundary_aware_features(features, scales, projection_dim, seed, groups, similarity, name=f"video {video!r}")
    pooled = (int(projection_dim) or features.shape[1]) if "pooled" in groups else 0
    layout = channel_layout([n for n, _ in scales], groups, pooled)
    if layout[-1]["stop"] != out.shape[1]:
        raise AssertionError(f"channel layout of {layout[-1]['stop']} channels, B has {out.shape[1]}")
    write_features(store_path, video, out, grid, scales=[n for n, _ in scales],
                   change_points_per_scale=[int(len(c)) for _, c in scales], groups=list(groups),
                   channel_groups=[{k: b[k] for k in ("group", "scale", "start", "stop")} for b in layout],
                   channel_names=[n for b in layout for n in b["names"]],
                   layout=f"groups {', '.join(groups)} (stages/bapg/proposal_features.py): per scale "
                          f"{pooled} pooled feature channels (segment mean of Fv) then "
                          f"{len(BOUNDARY_CHANNELS) if 'boundary' in groups else 0} boundary channels "
                          f"({', '.join(BOUNDARY_CHANNELS)}); then {len(NOVELTY_WIDTHS) if 'novelty' in groups else 0}"
                          f" novelty channels (widths {list(NOVELTY_WIDTHS)}); then "
                          f"{len(scales) if 'strength' in groups else 0} strength channels (one per scale)",
                   projection_dim=int(projection_dim))
