"""Proposals from TSC change points (BAPG II-C; docs/method.md §4); recall (AR@AN): stages/bapg/proposal_recall.py.

A segment of feature steps [a, b) spans, in seconds, from the start of step a to the end of step b-1:
    start = grid.to_seconds(a) - step / 2,   end = grid.to_seconds(b - 1) + step / 2,
with step = grid.step_seconds (stride / fps) the time between two features, clipped to [0, duration] when the
duration is known. (Feature i is centred at grid.to_seconds(i); consecutive steps tile the time line.)

Proposals of one video: for each m, the m+1 segments of the segmentation and the unions of 2..max_union
consecutive segments; deduplicated across m (a span keeps the first (m, n_segments) that produced it).
Built from change points alone, the rank is the row order: m ascending, then n_segments ascending, then start
ascending. When the similarity matrix is at hand (the TSCProposals stage), `score_proposals` scores each
proposal by its contrast with its surroundings in S and ranks by it (score descending, ties in that order).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tal_pipeline.stages.bapg.proposal_recall import recall_by_m
from tal_pipeline.stages.bapg.scales import Scales, count_name, tsc_scales
from tal_pipeline.stages.data.timegrid import TimeGrid

COLUMNS = ["start", "end", "start_step", "end_step", "m", "n_segments", "score"]


def proposals_from_change_points(change_points: dict[int, np.ndarray], num_steps: int, grid: TimeGrid,
                                 duration: float | None = None, max_union: int = 3, dedup: bool = True
                                 ) -> pd.DataFrame:
    """Proposal table of one video from {m: change points (m,) int} over `num_steps` feature steps.

    Returns a DataFrame with columns start, end (float64 seconds), start_step, end_step (int64, the span
    [start_step, end_step) of feature steps), m (int64, the segmentation it came from) and n_segments
    (int64, how many consecutive segments were joined), in rank order (see module docstring).
    dedup=False keeps every m's full set (a span produced by several m appears once per m; duplicates within
    one m cannot occur): what recall_by_m needs. table.attrs["dedup"] records the choice.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if max_union < 1:
        raise ValueError(f"max_union must be >= 1, got {max_union}")
    rows: list[tuple[int, int, int, int]] = []  # (start_step, end_step, m, n_segments)
    seen: set[tuple[int, int]] = set()
    for m in sorted(change_points):
        cps = np.asarray(change_points[m], dtype=np.int64)
        if cps.size and (cps[0] <= 0 or cps[-1] >= num_steps or np.any(np.diff(cps) <= 0)):
            raise ValueError(f"change points for m={m} must be ascending in (0, {num_steps}), got {cps.tolist()}")
        bounds = np.concatenate([[0], cps, [num_steps]])  # (n_seg + 1,)
        n_seg = len(bounds) - 1
        for n in range(1, min(max_union, n_seg) + 1):
            for i in range(n_seg - n + 1):
                span = (int(bounds[i]), int(bounds[i + n]))
                key = span if dedup else (*span, int(m))
                if key not in seen:
                    seen.add(key)
                    rows.append((*span, int(m), n))
    table = pd.DataFrame(rows, columns=["start_step", "end_step", "m", "n_segments"]).astype("int64")
    half = grid.step_seconds / 2.0
    start = grid.to_seconds(table["start_step"].to_numpy()) - half  # (N,)
    end = grid.to_seconds(table["end_step"].to_numpy() - 1) + half  # (N,)
    hi = np.inf if duration is None else float(duration)
    table.insert(0, "start", np.clip(start, 0.0, hi))
    table.insert(1, "end", np.clip(end, 0.0, hi))
    table["score"] = np.nan  # unscored: see score_proposals
    table = table[COLUMNS]
    table.attrs["dedup"] = bool(dedup)
    return table


def proposal_contrast(similarity, start_steps, end_steps, block_rows: int = 256) -> np.ndarray:
    """Contrast of each proposal [a, b) with its surroundings in S: (N,) float64.

        score = mean S[a:b, a:b] - max(mean S[a:b, a-w:a], mean S[a:b, b:b+w]),   w = b - a (clipped to [0, T))

    A proposal that covers one coherent span (an action) and nothing of the unlike steps around it (its
    warm-up, cool-down or background) scores high. A side with no steps (the video's ends) is left out; with
    neither side, the score is the inside mean. S is read once in row blocks; each row's prefix sums give every
    rectangle sum in O(1), so the cost is T^2 plus the proposals' total length, with O(block_rows x T) memory.
    """
    a = np.asarray(start_steps, dtype=np.int64)
    b = np.asarray(end_steps, dtype=np.int64)
    T = int(similarity.shape[0])
    w = b - a
    lo, hi = np.maximum(a - w, 0), np.minimum(b + w, T)  # (N,) context edges
    inside, left, right = np.zeros(len(a)), np.zeros(len(a)), np.zeros(len(a))
    for r0 in range(0, T, block_rows):
        r1 = min(T, r0 + block_rows)
        rows = np.asarray(similarity[r0:r1, :], dtype=np.float64)  # (nb, T)
        P = np.zeros((r1 - r0, T + 1))
        np.cumsum(rows, axis=1, out=P[:, 1:])  # (nb, T+1) row prefix sums
        for n in np.flatnonzero((a < r1) & (b > r0)):
            i0, i1 = max(a[n], r0) - r0, min(b[n], r1) - r0  # the proposal's rows inside this block
            pa, pb = P[i0:i1, a[n]], P[i0:i1, b[n]]
            inside[n] += (pb - pa).sum()
            left[n] += (pa - P[i0:i1, lo[n]]).sum()
            right[n] += (P[i0:i1, hi[n]] - pb).sum()
    inside /= w * w
    wl, wr = (a - lo) * w, (hi - b) * w  # (N,) entries of each side block
    left = np.where(wl > 0, left / np.maximum(wl, 1), -np.inf)
    right = np.where(wr > 0, right / np.maximum(wr, 1), -np.inf)
    context = np.maximum(left, right)
    return np.where(np.isfinite(context), inside - context, inside)


def soft_nms_rank(segments: np.ndarray, scores: np.ndarray, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian Soft-NMS over proposals (models.nms.soft_nms): (order (N,), decayed scores (N,)), best first.

    Near-duplicates (the same span from several scales, unions that share segments) sink below distinct ones.
    Scores are shifted to be positive first, so the decay acts on every one and none is dropped.
    """
    import torch

    from tal_pipeline.models.nms import soft_nms

    score = np.asarray(scores, dtype=np.float64)
    score = score - score.min() + 1e-3 if score.size else score
    order, decayed = soft_nms(torch.as_tensor(np.asarray(segments, dtype=np.float64).reshape(-1, 2)),
                              torch.as_tensor(score), sigma=sigma, min_score=0.0)
    return order.numpy().astype(np.int64), decayed.numpy()


def score_proposals(table: pd.DataFrame, similarity, block_rows: int = 256, sigma: float = 1.0) -> pd.DataFrame:
    """The table ranked by proposal_contrast after Soft-NMS (sigma; 0: no Soft-NMS), its "score" column set to
    the (decayed) score. On the THUMOS14-shaped benchmark's training videos, Soft-NMS with sigma 1 raised
    AR@100 from 0.49 to 0.53 (rates 8/16/32 per minute, unions of up to 3 segments)."""
    contrast = proposal_contrast(similarity, table["start_step"].to_numpy(), table["end_step"].to_numpy(),
                                 block_rows)
    if sigma > 0:
        order, score = soft_nms_rank(table[["start_step", "end_step"]].to_numpy(), contrast, sigma)
    else:
        order = np.argsort(-contrast, kind="stable")
        score = contrast[order]
    scored = table.iloc[order].reset_index(drop=True)
    scored["score"] = score
    scored.attrs.update(table.attrs)
    return scored


# -- boundary sources: where a video's change points come from (scales: stages/bapg/scales.py) ---------------

BOUNDARY_SOURCES = ("tsc", "raw", "random", "oracle")  # raw: TSC on a similarity matrix of the raw features
SIMILARITY_SOURCES = ("tsc", "raw")  # the sources whose change points come from TSC on a similarity matrix


def random_change_points(num_steps: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """m distinct change points drawn uniformly from 1..num_steps-1 (the random-boundary ablation): (m,) int64."""
    m = min(int(m), num_steps - 1)
    return np.sort(rng.choice(np.arange(1, num_steps), size=m, replace=False)).astype(np.int64)


def oracle_change_points(gt_seconds: np.ndarray, num_steps: int, fps: float, window: int, stride: int
                         ) -> np.ndarray:
    """The steps at which ground-truth actions start or end (the boundary upper bound): (m,) int64 ascending.

    A boundary at time s lies at the continuous step x = seconds_to_feature(s); the step boundary nearest to
    it, between steps i-1 and i (at i - 0.5), is the change point i = round(x + 0.5).
    """
    from tal_pipeline.stages.data.timegrid import seconds_to_feature

    x = seconds_to_feature(np.asarray(gt_seconds, dtype=np.float64).reshape(-1), fps, window, stride)
    cps = np.unique(np.round(x + 0.5).astype(np.int64))
    return cps[(cps > 0) & (cps < num_steps)]


def _video_seed(video: str, seed: int) -> int:
    import zlib

    return zlib.crc32(f"{seed}:{video}".encode()) & 0x7FFFFFFF


# -- the TSCProposals stage: change points and proposals cached per video -----------------------------------

def tsc_proposals_to_store(video: str, *, store_path: str, scales: Scales, source: str = "tsc",
                           similarity_store: str | None = None, tsc_store: str | None = None,
                           features_store: str | None = None, max_union: int = 3,
                           durations: dict[str, float] | None = None, gt_seconds: dict | None = None,
                           seed: int = 0) -> None:
    """Change points of one video at every scale of `scales`, then its proposal table in Zarr.

    source "tsc": TSC on the video's similarity matrix (similarity_store, read in row blocks); "random": as many
    random change points per scale as the TSC store (tsc_store) has (the random-boundary ablation); "oracle":
    the ground-truth action boundaries (gt_seconds {video: (G, 2)}; features_store gives the time grid), the
    same segmentation at every scale (the upper bound of what boundaries can give).
    The video's array is the deduplicated proposal table as float64 (N, 6) with columns COLUMNS; its attributes
    hold the change points per count m ({"10": [...], ...}), the scales in feature order ([{"name", "m"}]), the
    number of steps and the time grid. durations: {video: seconds} (proposal ends are clipped to it).
    """
    from tal_pipeline.storage.zarr_store import ArtifactStore

    if source not in BOUNDARY_SOURCES:
        raise ValueError(f"unknown boundary source {source!r}; known: {BOUNDARY_SOURCES}")
    if source in SIMILARITY_SOURCES:
        similarity = ArtifactStore(similarity_store).read(video)  # (T, T) float16, read block-wise by the DP
        a = similarity.attrs
        T = int(similarity.shape[0])
    else:
        a = ArtifactStore(features_store if source == "oracle" else tsc_store).read(video).attrs
        T = int(a["num_steps"]) if source == "random" else int(ArtifactStore(features_store).read(video).shape[0])
    grid = TimeGrid.from_attrs(a, f"video {video!r}")
    if source in SIMILARITY_SOURCES:
        found = tsc_scales(similarity, grid.span_seconds(T), scales, name=f"video {video!r}")
    elif source == "random":
        _, ref = read_change_points(tsc_store, video)
        rng = np.random.default_rng(_video_seed(video, seed))
        found = [(s["name"], random_change_points(T, int(s["m"]), rng)) for s in ref["scales"]]
    else:
        gt = np.asarray((gt_seconds or {}).get(video, np.zeros((0, 2))), dtype=np.float64)
        cps = oracle_change_points(gt, T, grid.fps, grid.window, grid.stride)
        found = [(label, cps) for label in scales.names()]
    cps_by_m = {len(c): c for _, c in found}
    duration = (durations or {}).get(video)
    duration = None if duration is None or not np.isfinite(duration) else float(duration)
    table = proposals_from_change_points(cps_by_m, T, grid, duration=duration, max_union=max_union)
    if source in SIMILARITY_SOURCES:
        table = score_proposals(table, similarity)
    meta = {"columns": COLUMNS, "change_points": {str(m): c.tolist() for m, c in cps_by_m.items()},
            "scales": [{"name": label, "m": int(len(c))} for label, c in found], "source": source, "num_steps": T,
            **grid.to_attrs(), "duration": duration, "max_union": int(max_union), "min_size": scales.min_size,
            "rank": "score descending (contrast with the surroundings in S), then m, n_segments, start" if source in
            SIMILARITY_SOURCES else "m ascending, then n_segments, then start (unscored)"}
    ArtifactStore(store_path).write_video(video, table.to_numpy(dtype=np.float64), 4096, ["proposal", "column"], meta)


def read_change_points(store_path: str, video: str) -> tuple[dict[int, np.ndarray], dict]:
    """Change points {m: (m,) int64} of one video from a TSCProposals store, and the array's attributes."""
    from tal_pipeline.storage.zarr_store import ArtifactStore

    attrs = dict(ArtifactStore(store_path).read(video).attrs)
    return {int(m): np.asarray(c, dtype=np.int64) for m, c in attrs["change_points"].items()}, attrs


def read_scales(store_path: str, video: str) -> list[tuple[str, np.ndarray]]:
    """[(scale name, change points)] of one video in feature order (stores without scales: m ascending)."""
    cps, attrs = read_change_points(store_path, video)
    scales = attrs.get("scales") or [{"name": count_name(m), "m": m} for m in sorted(cps)]
    return [(s["name"], cps[int(s["m"])]) for s in scales]


def read_proposals(store_path: str, video: str) -> pd.DataFrame:
    """The cached (deduplicated, ranked) proposal table of one video."""
    from tal_pipeline.storage.zarr_store import ArtifactStore

    array = ArtifactStore(store_path).read(video)
    table = pd.DataFrame(np.asarray(array[...]), columns=list(array.attrs["columns"]))
    for col in ("start_step", "end_step", "m", "n_segments"):
        table[col] = table[col].astype("int64")
    return table


def recall_table_from_store(store_path: str, gt_by_video: dict[str, np.ndarray]) -> pd.DataFrame:
    """Proposal recall of each scale alone and of all scales together ("all"), from the change points cached in
    a TSCProposals store, over the videos of gt_by_video. Column "m" holds the scale's name (e.g. "8/min": the
    count differs per video); "change_points_per_video" is the mean count of that scale."""
    tables, counts = {}, {}
    names: list[str] = []
    for video in gt_by_video:
        scales = read_scales(store_path, video)
        _, a = read_change_points(store_path, video)
        names = [n for n, _ in scales]
        for i, (_, c) in enumerate(scales):
            counts.setdefault(i, []).append(len(c))
        # keyed by scale index, so scales with equal counts (or per-video counts) stay apart
        table = proposals_from_change_points({i: c for i, (_, c) in enumerate(scales)}, int(a["num_steps"]),
                                             TimeGrid.from_attrs(a, f"video {video!r}"), duration=a.get("duration"),
                                             max_union=int(a["max_union"]), dedup=False)
        stored = read_proposals(store_path, video)  # the scores of the stage's (deduplicated) table
        score = dict(zip(zip(stored["start_step"], stored["end_step"]), stored["score"]))
        table["score"] = [score.get(k, np.nan) for k in zip(table["start_step"], table["end_step"])]
        tables[video] = table
    table = recall_by_m(tables, gt_by_video)
    table.insert(1, "change_points_per_video",
                 [float(np.mean(counts[m])) if m != "all" else float("nan") for m in table["m"]])
    table["m"] = [names[m] if m != "all" else "all" for m in table["m"]]
    return table
