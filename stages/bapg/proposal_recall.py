"""Proposal recall (AR@AN): the recall of ground-truth instances by ranked proposals (tIoU: models/segments.py),
of each change-point count m alone, and of each scale of a TSCProposals store. AR@AN keeps the first AN proposals
of each video."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tal_pipeline.models.segments import pairwise_tiou
from tal_pipeline.stages.bapg.proposal_store import read_change_points, read_proposals, read_scales
from tal_pipeline.stages.bapg.proposal_table import proposals_from_change_points
from tal_pipeline.stages.data.timegrid import TimeGrid

DEFAULT_TIOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)  # 0.5:0.05:0.95 (10 thresholds)
DEFAULT_ANS = (1, 5, 10, 20, 50, 100)


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
        iou = pairwise_tiou(gt, props)  # (G, N)
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
    # scored tables rank by score (descending); unscored ones keep their row order
    ranked = {v: (t.iloc[np.argsort(-t["score"].to_numpy(), kind="stable")]
                  if "score" in t and t["score"].notna().all() else t) for v, t in tables_by_video.items()}
    rows = []
    for m in [*ms, "all"]:
        if m == "all":
            props = {v: t.drop_duplicates(["start_step", "end_step"])[["start", "end"]].to_numpy()
                     for v, t in ranked.items()}
        else:
            props = {v: t.loc[t["m"] == m, ["start", "end"]].to_numpy() for v, t in ranked.items()}
        r = proposal_recall(props, gt_by_video, tiou_thresholds, ans)
        row = {"m": m, "n_gt": r["n_gt"],
               "proposals_per_video": float(np.mean([len(p) for p in props.values()])) if props else 0.0,
               "recall@0.5": r["recall@0.5"], "recall@0.7": r["recall@0.7"]}
        row.update({f"AR@{an}": v for an, v in r["AR@AN"].items()})
        rows.append(row)
    return pd.DataFrame(rows)


def recall_table_from_store(store_path: str, gt_by_video: dict[str, np.ndarray]) -> pd.DataFrame:
    """Proposal recall of each scale alone and of all scales together ("all"), from the change points cached in
    a TSCProposals store, over the videos of gt_by_video. Column "scale" holds the scale's name (e.g. "8/min": the
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
    table = recall_by_m(tables, gt_by_video).rename(columns={"m": "scale"})
    table.insert(1, "change_points_per_video",
                 [float(np.mean(counts[i])) if i != "all" else float("nan") for i in table["scale"]])
    table["scale"] = [names[i] if i != "all" else "all" for i in table["scale"]]
    return table
