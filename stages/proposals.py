"""Proposals from TSC change points (BAPG II-C, DESIGN 3.3) and proposal recall (AR@AN).

A segment of feature steps [a, b) spans, in seconds, from the start of step a to the end of step b-1:
    start = feature_to_seconds(a) - step / 2,   end = feature_to_seconds(b - 1) + step / 2,
with step = stride / fps the time between two features, clipped to [0, duration] when the duration is
known. (Feature i is centred at feature_to_seconds(i); consecutive steps tile the time line.)

Proposals of one video: for each m, the m+1 segments of the segmentation and the unions of 2..max_union
consecutive segments; deduplicated across m (a span keeps the first (m, n_segments) that produced it).
TSC proposals have no score, so their rank is their row order: m ascending, then n_segments ascending,
then start ascending. AR@AN keeps the first AN rows of each video.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from stages.timegrid import feature_step_seconds, feature_to_seconds

DEFAULT_TIOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)  # 0.5:0.05:0.95 (10 thresholds)
DEFAULT_ANS = (1, 5, 10, 20, 50, 100)
COLUMNS = ["start", "end", "start_step", "end_step", "m", "n_segments"]


def proposals_from_change_points(change_points: dict[int, np.ndarray], num_steps: int, fps: float, window: int,
                                 stride: int, duration: float | None = None, max_union: int = 3,
                                 dedup: bool = True) -> pd.DataFrame:
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
    half = feature_step_seconds(fps, stride) / 2.0
    start = feature_to_seconds(table["start_step"].to_numpy(), fps, window, stride) - half  # (N,)
    end = feature_to_seconds(table["end_step"].to_numpy() - 1, fps, window, stride) + half  # (N,)
    hi = np.inf if duration is None else float(duration)
    table.insert(0, "start", np.clip(start, 0.0, hi))
    table.insert(1, "end", np.clip(end, 0.0, hi))
    table = table[COLUMNS]
    table.attrs["dedup"] = bool(dedup)
    return table


def tiou(proposals: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Temporal IoU of every ground truth with every proposal: (G, 2), (N, 2) seconds -> (G, N)."""
    p = np.asarray(proposals, dtype=np.float64).reshape(-1, 2)[None, :, :]  # (1, N, 2)
    g = np.asarray(gt, dtype=np.float64).reshape(-1, 2)[:, None, :]  # (G, 1, 2)
    inter = np.clip(np.minimum(p[..., 1], g[..., 1]) - np.maximum(p[..., 0], g[..., 0]), 0.0, None)  # (G, N)
    union = (p[..., 1] - p[..., 0]) + (g[..., 1] - g[..., 0]) - inter  # (G, N)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def proposal_recall(proposals_by_video: dict[str, np.ndarray], gt_by_video: dict[str, np.ndarray],
                    tiou_thresholds=DEFAULT_TIOU_THRESHOLDS, ans=DEFAULT_ANS) -> dict:
    """Recall of ground-truth instances by ranked proposals, pooled over all ground truths of all videos.

    proposals_by_video: {video: (N, 2) [start, end] seconds, in rank order}; gt_by_video: {video: (G, 2)}.
    A ground truth is recalled at threshold t if some kept proposal has tIoU >= t with it. Videos with ground
    truth but no proposals count as missed; videos without ground truth are ignored.
    Returns {"AR@AN": {AN: recall averaged over tiou_thresholds, keeping each video's first AN proposals},
             "recall@0.5", "recall@0.7": recall with all proposals, "n_gt": int,
             "recall_by_tiou": {threshold: recall with all proposals}}.
    """
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64)  # (R,)
    ans = [int(a) for a in ans]
    if any(a < 1 for a in ans):
        raise ValueError(f"AN values must be >= 1, got {ans}")
    limits = [*ans, None]  # None: all proposals
    # best[l]: list over videos of (G,) best tIoU of each ground truth among the first limits[l] proposals
    best: list[list[np.ndarray]] = [[] for _ in limits]
    for video, gt in gt_by_video.items():
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 2)  # (G, 2)
        if gt.shape[0] == 0:
            continue
        props = np.asarray(proposals_by_video.get(video, np.zeros((0, 2))), dtype=np.float64).reshape(-1, 2)
        iou = tiou(props, gt)  # (G, N)
        # running max over the rank: best tIoU of each ground truth within the top n proposals
        run = np.maximum.accumulate(iou, axis=1) if iou.shape[1] else np.zeros((gt.shape[0], 1))  # (G, N|1)
        for i, lim in enumerate(limits):
            if iou.shape[1] == 0:
                best[i].append(np.zeros(gt.shape[0]))
            else:
                n = iou.shape[1] if lim is None else min(lim, iou.shape[1])
                best[i].append(run[:, n - 1])
    n_gt = int(sum(len(b) for b in best[-1]))
    if n_gt == 0:
        raise ValueError("proposal recall: no ground-truth instances in gt_by_video")
    pooled = [np.concatenate(b) for b in best]  # each (n_gt,)

    def recall(values: np.ndarray, t: float) -> float:
        return float(np.mean(values >= t - 1e-12))  # tolerance: tIoU of exactly t counts despite rounding

    return {
        "AR@AN": {an: float(np.mean([recall(pooled[i], t) for t in thresholds])) for i, an in enumerate(ans)},
        "recall@0.5": recall(pooled[-1], 0.5),
        "recall@0.7": recall(pooled[-1], 0.7),
        "recall_by_tiou": {float(t): recall(pooled[-1], t) for t in thresholds},
        "n_gt": n_gt,
    }


def recall_by_m(tables_by_video: dict[str, pd.DataFrame], gt_by_video: dict[str, np.ndarray],
                tiou_thresholds=DEFAULT_TIOU_THRESHOLDS, ans=DEFAULT_ANS) -> pd.DataFrame:
    """Proposal recall for each m alone and for all m together ("all": duplicates across m dropped), one row each.

    tables_by_video: {video: proposals_from_change_points(..., dedup=False)} (with deduplicated tables a larger
    m would lose the spans a smaller m produced first, so they are refused).
    Columns: m, n_gt, proposals_per_video (mean), recall@0.5, recall@0.7, AR@<AN> for each AN.
    """
    for video, t in tables_by_video.items():
        if t.attrs.get("dedup", False):
            raise ValueError(f"recall_by_m: the proposal table of video {video!r} was deduplicated across m; "
                             "build it with dedup=False")
    ms = sorted({int(m) for t in tables_by_video.values() for m in t["m"].unique()})
    rows = []
    for m in [*ms, "all"]:
        if m == "all":
            props = {v: t.drop_duplicates(["start_step", "end_step"])[["start", "end"]].to_numpy()
                     for v, t in tables_by_video.items()}
        else:
            props = {v: t.loc[t["m"] == m, ["start", "end"]].to_numpy() for v, t in tables_by_video.items()}
        r = proposal_recall(props, gt_by_video, tiou_thresholds, ans)
        row = {"m": m, "n_gt": r["n_gt"],
               "proposals_per_video": float(np.mean([len(p) for p in props.values()])) if props else 0.0,
               "recall@0.5": r["recall@0.5"], "recall@0.7": r["recall@0.7"]}
        row.update({f"AR@{an}": v for an, v in r["AR@AN"].items()})
        rows.append(row)
    return pd.DataFrame(rows)


# -- the TSCProposals stage: change points and proposals cached per video -----------------------------------

def tsc_proposals_to_store(video: str, *, similarity_store: str, store_path: str, ms: list[int], min_size: int = 1,
                           max_union: int = 3, durations: dict[str, float] | None = None) -> None:
    """TSC on one video's similarity matrix (read from Zarr in row blocks), then its proposal table in Zarr.

    The video's array is the deduplicated proposal table as float64 (N, 6) with columns COLUMNS; its attributes
    hold the change points for every m ({"10": [...], ...}), the number of steps and the time grid, so the
    proposals (and per-m tables for recall) are rebuilt from the store alone. durations: {video: seconds}
    (proposal ends are clipped to the video's duration when it is known).
    """
    from stages.tsc import change_points
    from storage.zarr_store import ArtifactStore

    similarity = ArtifactStore(similarity_store).read(video)  # (T, T) float16, read block-wise by the DP
    a = similarity.attrs
    fps, window, stride = float(a["fps"]), int(a["window"]), int(a["stride"])
    cps = change_points(similarity, ms=ms, min_size=min_size, name=f"video {video!r}")
    T = int(similarity.shape[0])
    duration = (durations or {}).get(video)
    duration = None if duration is None or not np.isfinite(duration) else float(duration)
    table = proposals_from_change_points(cps, T, fps, window, stride, duration=duration, max_union=max_union)
    meta = {"columns": COLUMNS, "change_points": {str(m): c.tolist() for m, c in cps.items()}, "num_steps": T,
            "fps": fps, "window": window, "stride": stride, "duration": duration, "max_union": int(max_union),
            "min_size": int(min_size), "rank": "m ascending, then n_segments, then start (TSC proposals have no score)"}
    ArtifactStore(store_path).write_video(video, table.to_numpy(dtype=np.float64), 4096, ["proposal", "column"], meta)


def read_change_points(store_path: str, video: str) -> tuple[dict[int, np.ndarray], dict]:
    """Change points {m: (m,) int64} of one video from a TSCProposals store, and the array's attributes."""
    from storage.zarr_store import ArtifactStore

    attrs = dict(ArtifactStore(store_path).read(video).attrs)
    return {int(m): np.asarray(c, dtype=np.int64) for m, c in attrs["change_points"].items()}, attrs


def read_proposals(store_path: str, video: str) -> pd.DataFrame:
    """The cached (deduplicated, ranked) proposal table of one video."""
    from storage.zarr_store import ArtifactStore

    array = ArtifactStore(store_path).read(video)
    table = pd.DataFrame(np.asarray(array[...]), columns=list(array.attrs["columns"]))
    for col in ("start_step", "end_step", "m", "n_segments"):
        table[col] = table[col].astype("int64")
    return table


def recall_table_from_store(store_path: str, gt_by_video: dict[str, np.ndarray]) -> pd.DataFrame:
    """recall_by_m over the videos of gt_by_video, from the change points cached in a TSCProposals store."""
    tables = {}
    for video in gt_by_video:
        cps, a = read_change_points(store_path, video)
        tables[video] = proposals_from_change_points(cps, int(a["num_steps"]), a["fps"], a["window"], a["stride"],
                                                     duration=a.get("duration"), max_union=int(a["max_union"]),
                                                     dedup=False)
    return recall_by_m(tables, gt_by_video)
