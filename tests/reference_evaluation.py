"""Reference detection mAP for the tests and the benchmark: the rules of stages.evaluation.evaluate_detections
(see its module docstring) as a plain per-class Python loop, to cross-check the vectorised evaluator."""
from __future__ import annotations

import numpy as np

from tal_pipeline.stages.evaluation.mean_ap import (
    DEFAULT_MAX_DETS,
    DEFAULT_RECALL_AT,
    _check_args,
    _result,
    check_predictions,
    resolve_thresholds,
)


def _ref_tiou(a, b) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def _ref_interpolated_ap(tp: list[bool], n_gt: int) -> float:
    """ActivityNet's recipe, literally: sentinels, monotone precision, area at recall change points."""
    hits, precision, recall = 0, [], []
    for i, flag in enumerate(tp):
        hits += flag
        precision.append(hits / (i + 1))
        recall.append(hits / n_gt)
    mprec, mrec = [0.0, *precision, 0.0], [0.0, *recall, 1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def _ref_plain_ap(tp: list[bool], n_gt: int) -> float:
    hits, total = 0, 0.0
    for i, flag in enumerate(tp):
        if flag:
            hits += 1
            total += hits / (i + 1)
    return total / n_gt


def _ref_clean(gt, predictions, max_dets, subset):
    """GT per (label, video) lists, ambiguous per video, and the kept detections, by plain loops."""
    gt = gt.subset(subset)
    truth, seen, n_dup = {}, set(), 0
    for row in gt.actions.sort_values(["video", "start", "end"], kind="stable").itertuples(index=False):
        key = (row.video, row.label, row.start, row.end)
        if key in seen:
            n_dup += 1
            continue
        seen.add(key)
        truth.setdefault(row.label, {}).setdefault(row.video, []).append((row.start, row.end))
    ambiguous = {}
    for row in gt.instances[gt.instances["ambiguous"]].itertuples(index=False):
        ambiguous.setdefault(row.video, []).append((row.start, row.end))
    videos = set(gt.videos["video"]) | {v for per_video in truth.values() for v in per_video}
    rows = list(check_predictions(predictions).itertuples(index=False))
    known = [(i, r) for i, r in enumerate(rows) if r.video in videos and r.label in truth]
    by_video = {}
    for i, r in known:
        by_video.setdefault(r.video, []).append((i, r))
    kept = []
    for items in by_video.values():
        items = sorted(items, key=lambda item: -item[1].score)  # sorted() is stable: ties keep table order
        kept += items if max_dets is None else items[:max_dets]
    kept.sort(key=lambda item: item[0])
    report = {"ignored_videos": sorted({r.video for r in rows if r.video not in videos}),
              "ignored_labels": sorted({r.label for r in rows if r.label not in truth}),
              "ignored_predictions": len(rows) - len(known), "dropped_by_cap": len(known) - len(kept),
              "duplicate_gt_removed": n_dup}
    return gt, truth, ambiguous, [r for _, r in kept], report


def _ref_rank(dets, gts, ambiguous, threshold, strict) -> list[bool]:
    """Greedy matching of one class at one threshold; returns TP flags of the ranked, filtered list."""
    taken, ranked = set(), []
    for det in sorted(dets, key=lambda d: -d.score):
        best, best_iou = None, -1.0
        for j, seg in enumerate(gts.get(det.video, [])):
            iou = _ref_tiou((det.start, det.end), seg)
            passes = iou > threshold if strict else iou >= threshold
            if passes and iou > best_iou and (det.video, j) not in taken:
                best, best_iou = (det.video, j), iou
        if best is not None:
            taken.add(best)
            ranked.append(True)
        elif ambiguous is None or not any(min(det.end, e) - max(det.start, s) > 0
                                          for s, e in ambiguous.get(det.video, [])):
            ranked.append(False)
    return ranked


def evaluate_detections_reference(gt, predictions, thresholds="thumos14", mode="anet", max_dets=DEFAULT_MAX_DETS,
                                  subset=None, recall_at=DEFAULT_RECALL_AT) -> dict:
    """Plain-Python per-class loop with the rules of :func:`evaluate_detections` (cross-check only)."""
    _check_args(mode, max_dets, recall_at)
    thresholds = resolve_thresholds(thresholds)
    gt, truth, ambiguous, kept, report = _ref_clean(gt, predictions, max_dets, subset)
    labels = sorted(truth)
    ap = np.zeros((len(labels), len(thresholds)))
    recall = {k: np.zeros((len(labels), len(thresholds))) for k in recall_at}
    for c, label in enumerate(labels):
        dets = [d for d in kept if d.label == label]
        n_gt = sum(len(segs) for segs in truth[label].values())
        for t, threshold in enumerate(thresholds):
            strict = mode == "thumos14"
            ranked = _ref_rank(dets, truth[label], ambiguous if strict else None, threshold, strict)
            ap[c, t] = _ref_plain_ap(ranked, n_gt) if strict else _ref_interpolated_ap(ranked, n_gt)
            for k in recall_at:
                recall[k][c, t] = sum(ranked[: k * n_gt]) / n_gt
    mean_recall = {k: r.mean(axis=0) if labels else r.sum(axis=0) for k, r in recall.items()}
    n_gt_all = sum(len(s) for per_video in truth.values() for s in per_video.values())
    return _result(thresholds, labels, ap, mean_recall, report, mode, max_dets, n_gt_all, len(kept), gt.warnings)
