"""Temporal action detection mAP (docs/method.md §10), vectorised with NumPy, greedy matching in Numba.

Two modes:

- ``"anet"`` (ActivityNet's ``eval_detection.py`` rules): per class, detections sorted by score
  (descending, stable: equal scores keep the order of the prediction table); each is matched to the
  unmatched ground truth (GT) of the same class and video with the highest tIoU, if that tIoU
  ``>= threshold``; otherwise it is a false positive (FP). AP is interpolated: precision made
  monotone (each point takes the best precision at any higher recall), summed over the recall steps.
- ``"thumos14"`` (the official ``TH14evalDet.m`` rules): the same greedy matching but with a strict
  ``tIoU > threshold``; AP is not interpolated (sum of the precision at each true positive / #GT);
  an unmatched detection whose interval intersects an Ambiguous segment of its video (intersection
  length ``> 0``, i.e. any tIoU > 0, whatever the class) is ignored: removed from the ranking, so it
  is neither a true nor a false positive. A detection that only touches an Ambiguous segment at one
  end point (zero-length intersection) still counts as an FP.

Common rules:

- tIoU = intersection / (len(a) + len(b) - intersection), computed in float64 as written, with no
  tolerance (as both official tools do); a detection of length 0 against a GT of length 0 has tIoU 0
  (models/segments.py).
- Equal tIoU between several free GTs: the first in (video, start, end) order wins.
- mAP is the mean over the classes present in the (subset's) GT; a class with no detection has AP 0.
- Inputs are cleaned, and each step is counted in the report: duplicate GT rows (same video,
  label, start, end) are removed; detections of videos absent from the GT and of labels absent from
  the GT are dropped (names listed); then at most ``max_dets`` detections per video are kept (the
  highest scores over all classes, ties by table order).
- Recall at k x #GT: for each class, the share of its GT matched by its top ``k * #GT`` ranked
  detections (after the Ambiguous filter in thumos14 mode), averaged over the classes.

:func:`evaluate_detections` is the vectorised implementation; tests/reference_evaluation.py holds a
plain-Python per-class loop that follows the same rules, for the tests and the benchmark.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from numba import njit

from tal_pipeline.models.segments import intersection, tiou
from tal_pipeline.storage.annotations import finite_number
from tal_pipeline.storage.paths import read_json_mapping

MODES = ("anet", "thumos14")
# (first, last, step): expanded by threshold_preset() on an integer grid, so no float drift
PRESETS = {"thumos14": (0.3, 0.7, 0.1), "activitynet": (0.5, 0.95, 0.05)}
PRED_COLUMNS = ["video", "start", "end", "label", "score"]
DEFAULT_MAX_DETS = 200
DEFAULT_RECALL_AT = (1, 5)


# ---------------------------------------------------------------------------------------------
# thresholds and inputs
# ---------------------------------------------------------------------------------------------
def threshold_preset(name: str) -> list[float]:
    """tIoU thresholds of a preset, rounded to 2 decimals: thumos14 [0.3..0.7], activitynet [0.5..0.95]."""
    if name not in PRESETS:
        raise ValueError(f"unknown threshold preset {name!r} (choose from {sorted(PRESETS)})")
    first, last, step = PRESETS[name]
    n = int(round((last - first) / step)) + 1
    return [round(first + i * step, 2) for i in range(n)]


def resolve_thresholds(thresholds) -> list[float]:
    """A preset name or a sequence of numbers in (0, 1] -> plain floats rounded to 2 decimals."""
    if isinstance(thresholds, str):
        return threshold_preset(thresholds)
    values = [round(float(t), 2) for t in np.atleast_1d(np.asarray(thresholds, dtype=float))]
    if not values or not all(0.0 < t <= 1.0 for t in values):
        raise ValueError(f"tIoU thresholds must be numbers in (0, 1], got {list(np.atleast_1d(thresholds))}")
    return values


def load_predictions(path: str | Path, invalid: str = "error") -> pd.DataFrame:
    """Read ActivityNet-style results ``{"results": {video: [{"segment": [s, e], "label", "score"}]}}``.

    Returns a table with columns video, start, end, label, score in file order. Errors name the file,
    the video and the detection index. invalid="drop" keeps segments that end before they start, for
    evaluate_detections(..., invalid="drop") to drop and count.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prediction file {path} does not exist")
    data = read_json_mapping(path, "prediction file", "results")
    rows = []
    for video, dets in data["results"].items():
        if not isinstance(dets, list):
            raise ValueError(f"prediction file {path}: video {video!r}: detections must be a list")
        for i, det in enumerate(dets):
            rows.append(_prediction_row(det, f"prediction file {path}: video {video!r}, detection {i}", video,
                                        invalid == "error"))
    table = pd.DataFrame(rows, columns=PRED_COLUMNS)
    return table.astype({"video": str, "start": float, "end": float, "label": str, "score": float})


def _prediction_row(det, where: str, video: str, refuse_backwards: bool = True) -> tuple:
    if not isinstance(det, dict):
        raise ValueError(f"{where}: expected an object, got {det!r}")
    missing = [key for key in ("segment", "label", "score") if key not in det]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")
    seg = det["segment"]
    if not isinstance(seg, (list, tuple)) or len(seg) != 2:
        raise ValueError(f"{where}: 'segment' must be [start, end], got {seg!r}")
    start, end = finite_number(seg[0], where, "segment start"), finite_number(seg[1], where, "segment end")
    score = finite_number(det["score"], where, "score")
    if end < start and refuse_backwards:
        raise ValueError(f"{where}: segment [{start}, {end}] ends before it starts (`tal-pipeline evaluate "
                         "--drop-invalid` drops and counts such segments)")
    return (str(video), start, end, str(det["label"]), score)


def check_predictions(predictions: pd.DataFrame, name: str = "predictions", invalid: str = "error") -> pd.DataFrame:
    """Validate a prediction table (columns, finite numbers, end >= start); returns a clean copy.

    invalid: "error" refuses a segment that ends before it starts (the default: it is a bug upstream);
    "drop" removes such segments (e.g. predictions clipped to a video whose annotations overrun it) and
    counts them in the returned table's attrs["invalid_dropped"].
    """
    if invalid not in ("error", "drop"):
        raise ValueError(f"invalid must be 'error' or 'drop', got {invalid!r}")
    missing = [c for c in PRED_COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing} (need {PRED_COLUMNS})")
    table = predictions[PRED_COLUMNS].reset_index(drop=True)
    numbers = {}
    for column in ("start", "end", "score"):
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)  # (N,)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name}: video {table['video'].iloc[i]!r}: {column} {table[column].iloc[i]!r} "
                             "is not a finite number")
        numbers[column] = values
    backwards = numbers["end"] < numbers["start"]
    if backwards.any() and invalid == "error":
        i = int(np.flatnonzero(backwards)[0])
        raise ValueError(f"{name}: video {table['video'].iloc[i]!r}: segment [{numbers['start'][i]}, "
                         f"{numbers['end'][i]}] ends before it starts ({int(backwards.sum())} such segment(s); "
                         "drop them with invalid='drop', `tal-pipeline evaluate --drop-invalid`)")
    keep = ~backwards
    out = pd.DataFrame({"video": table["video"].astype(str)[keep].to_numpy(), "start": numbers["start"][keep],
                        "end": numbers["end"][keep], "label": table["label"].astype(str)[keep].to_numpy(),
                        "score": numbers["score"][keep]})
    out.attrs["invalid_dropped"] = int(backwards.sum())
    return out


def _check_args(mode: str, max_dets, recall_at) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown evaluation mode {mode!r} (choose from {list(MODES)})")
    if max_dets is not None and (int(max_dets) != max_dets or max_dets < 1):
        raise ValueError(f"max_dets must be a positive integer or None, got {max_dets!r}")
    if any(int(k) != k or k < 1 for k in recall_at):
        raise ValueError(f"recall_at must list positive integers, got {list(recall_at)}")


# ---------------------------------------------------------------------------------------------
# shared cleaning (vectorised): GT dedup, unknown videos/labels, per-video cap
# ---------------------------------------------------------------------------------------------
def _clean_gt(gt, subset):
    """(actions without duplicates, ambiguous rows, sorted GT videos, sorted GT labels, #duplicates)."""
    gt = gt.subset(subset)
    actions = gt.actions
    dup = actions.duplicated(subset=["video", "label", "start", "end"]).to_numpy()  # (G,)
    actions = actions[~dup].reset_index(drop=True)
    ambiguous = gt.instances[gt.instances["ambiguous"]].reset_index(drop=True)
    videos = sorted(set(gt.videos["video"]) | set(actions["video"]))
    labels = sorted(actions["label"].unique())
    return gt, actions, ambiguous, videos, labels, int(dup.sum())


def _cap_per_video(video_code: np.ndarray, score: np.ndarray, max_dets) -> np.ndarray:
    """(N,) bool: the max_dets best-scored detections of each video (ties: table order)."""
    n = len(score)
    if max_dets is None or n == 0:
        return np.ones(n, dtype=bool)
    position = np.arange(n)
    order = np.lexsort((position, -score, video_code))  # (N,) by video, then score desc, then position
    sorted_video = video_code[order]
    group_start = np.searchsorted(sorted_video, sorted_video, side="left")  # (N,) first row of its video
    keep = np.zeros(n, dtype=bool)
    keep[order] = (position - group_start) < max_dets
    return keep


def _filter_predictions(preds: pd.DataFrame, videos: list[str], labels: list[str], max_dets
                        ) -> tuple[pd.DataFrame, dict]:
    """Drop detections of unknown videos/labels, then apply the per-video cap; returns (kept, report)."""
    known_video = preds["video"].isin(set(videos)).to_numpy()  # (N,)
    known_label = preds["label"].isin(set(labels)).to_numpy()  # (N,)
    report = {
        "ignored_videos": sorted(set(preds.loc[~known_video, "video"])),
        "ignored_labels": sorted(set(preds.loc[~known_label, "label"])),
        "ignored_predictions": int((~(known_video & known_label)).sum()),
    }
    kept = preds[known_video & known_label].reset_index(drop=True)
    video_code = _codes(kept["video"], videos)  # (K,)
    keep = _cap_per_video(video_code, kept["score"].to_numpy(), max_dets)
    report["dropped_by_cap"] = int((~keep).sum())
    return kept[keep].reset_index(drop=True), report


# ---------------------------------------------------------------------------------------------
# vectorised core
# ---------------------------------------------------------------------------------------------
def _codes(values: pd.Series, names: list[str]) -> np.ndarray:
    """Integer codes of values in the sorted list names (every value must be in names)."""
    return pd.Categorical(values, categories=names).codes.astype(np.int64)


def _pairs(det_key: np.ndarray, ref_key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (detection, reference) index pairs with equal keys; ref_key sorted.

    Returns ptr (D+1,) CSR offsets per detection, pair_det (P,), pair_ref (P,).
    """
    lo = np.searchsorted(ref_key, det_key, side="left")  # (D,)
    hi = np.searchsorted(ref_key, det_key, side="right")  # (D,)
    counts = hi - lo
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (D+1,)
    pair_det = np.repeat(np.arange(len(det_key)), counts)  # (P,)
    pair_ref = lo[pair_det] + np.arange(ptr[-1]) - ptr[pair_det]  # (P,)
    return ptr, pair_det, pair_ref.astype(np.int64)


@njit(cache=True)
def _greedy_match(ptr, pair_gt, pair_iou, thresholds, n_gt, strict):  # pragma: no cover (compiled)
    """tp (T, D): detection d (in ranked order) takes the best free GT among its pairs, per threshold."""
    n_thr, n_det = thresholds.shape[0], ptr.shape[0] - 1
    taken = np.zeros((n_thr, n_gt), dtype=np.bool_)
    tp = np.zeros((n_thr, n_det), dtype=np.bool_)
    for d in range(n_det):
        for t in range(n_thr):
            best, best_iou = -1, -1.0
            for p in range(ptr[d], ptr[d + 1]):
                iou = pair_iou[p]
                passes = iou > thresholds[t] if strict else iou >= thresholds[t]
                # strict > on best_iou: the first GT in (video, start, end) order wins a tie
                if passes and iou > best_iou and not taken[t, pair_gt[p]]:
                    best, best_iou = pair_gt[p], iou
            if best >= 0:
                taken[t, best] = True
                tp[t, d] = True
    return tp


def _match(dets: pd.DataFrame, actions: pd.DataFrame, ambiguous: pd.DataFrame, videos, labels, thresholds, mode):
    """Rank detections per class and match them; returns (tp (T, D), ambiguous_hit (D,), det_label (D,))."""
    n_videos = len(videos)
    d_label, d_video = _codes(dets["label"], labels), _codes(dets["video"], videos)  # (D,)
    d_score = dets["score"].to_numpy()
    # ranked order: class, then score descending, ties by table position (stable)
    order = np.lexsort((np.arange(len(dets)), -d_score, d_label))  # (D,)
    d_label, d_video = d_label[order], d_video[order]
    d_start, d_end = dets["start"].to_numpy()[order], dets["end"].to_numpy()[order]

    g_label, g_video = _codes(actions["label"], labels), _codes(actions["video"], videos)  # (G,)
    g_start, g_end = actions["start"].to_numpy(), actions["end"].to_numpy()
    g_order = np.lexsort((g_end, g_start, g_video, g_label))  # (G,) grouped by (class, video)
    g_key = g_label[g_order] * n_videos + g_video[g_order]
    ptr, pair_det, pair_ref = _pairs(d_label * n_videos + d_video, g_key)
    gi = g_order[pair_ref]  # (P,) GT row of each pair
    iou = tiou(d_start[pair_det], d_end[pair_det], g_start[gi], g_end[gi])  # (P,) two zero-length segments: 0
    tp = _greedy_match(ptr, pair_ref, iou, np.asarray(thresholds, dtype=np.float64), len(actions), mode == "thumos14")

    hit = np.zeros(len(dets), dtype=bool)  # (D,) intersects an Ambiguous segment of its video
    if mode == "thumos14" and len(ambiguous):
        a_video = _codes(ambiguous["video"], videos)
        a_order = np.argsort(a_video, kind="stable")
        _, a_det, a_ref = _pairs(d_video, a_video[a_order])
        ai = a_order[a_ref]
        inter = intersection(d_start[a_det], d_end[a_det], ambiguous["start"].to_numpy()[ai],
                             ambiguous["end"].to_numpy()[ai])
        hit[a_det[inter > 0]] = True
    return tp, hit, d_label


def average_precision(tp: np.ndarray, n_gt: int, interpolated: bool) -> float:
    """AP of one ranked list: tp (N,) bool in rank order, n_gt > 0 ground truths.

    Non-interpolated: sum of precision at each TP / n_gt. Interpolated (ActivityNet): recall rises by
    1/n_gt exactly at each TP, so the area is the sum over TPs of the precision envelope
    max(precision[i:]) / n_gt.
    """
    if len(tp) == 0 or n_gt == 0:
        return 0.0
    hits = np.cumsum(tp)  # (N,)
    precision = hits / np.arange(1, len(tp) + 1)  # (N,)
    if interpolated:
        precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(precision[tp].sum() / n_gt)


def _scores(tp, hit, d_label, n_gt_per_class, thresholds, mode, recall_at):
    """Per-class AP (C, T) and mean recall at k x #GT {k: (T,)}."""
    n_classes, n_thr = len(n_gt_per_class), len(thresholds)
    bounds = np.searchsorted(d_label, np.arange(n_classes + 1))  # (C+1,) class slices of the ranking
    ap = np.zeros((n_classes, n_thr))
    recall = {k: np.zeros((n_classes, n_thr)) for k in recall_at}
    for c in range(n_classes):
        lo, hi, n_gt = bounds[c], bounds[c + 1], int(n_gt_per_class[c])
        for t in range(n_thr):
            ranked = tp[t, lo:hi]  # (Nc,)
            if mode == "thumos14":
                ranked = ranked[ranked | ~hit[lo:hi]]  # unmatched detections on Ambiguous leave the ranking
            ap[c, t] = average_precision(ranked, n_gt, interpolated=(mode == "anet"))
            for k in recall_at:
                recall[k][c, t] = ranked[: k * n_gt].sum() / n_gt
    return ap, {k: r.mean(axis=0) if n_classes else r.sum(axis=0) for k, r in recall.items()}


def evaluate_detections(
    gt,
    predictions: pd.DataFrame,
    thresholds="thumos14",
    mode: str = "anet",
    max_dets: int | None = DEFAULT_MAX_DETS,
    subset: str | None = None,
    recall_at=DEFAULT_RECALL_AT,
    invalid: str = "error",
) -> dict:
    """mAP of predictions (video, start, end, label, score) against gt (storage.annotations.Annotations).

    thresholds: a preset name ("thumos14", "activitynet") or tIoU values; mode: "anet" or "thumos14";
    max_dets: per-video cap (None: no cap); subset: GT subset to evaluate (case-insensitive);
    invalid: "error" (default) refuses segments that end before they start, "drop" drops and counts them
    (report["invalid_dropped"]).
    Returns {"thresholds", "mAP", "average_mAP", "per_class_AP", "recall", "report"} (JSON-ready).
    """
    _check_args(mode, max_dets, recall_at)
    thresholds = resolve_thresholds(thresholds)
    gt, actions, ambiguous, videos, labels, n_dup = _clean_gt(gt, subset)
    checked = check_predictions(predictions, invalid=invalid)
    dets, report = _filter_predictions(checked, videos, labels, max_dets)
    report["invalid_dropped"] = checked.attrs["invalid_dropped"]
    tp, hit, d_label = _match(dets, actions, ambiguous, videos, labels, thresholds, mode)
    n_gt = np.bincount(_codes(actions["label"], labels), minlength=len(labels))  # (C,)
    ap, recall = _scores(tp, hit, d_label, n_gt, thresholds, mode, recall_at)
    ignored_amb = (~tp & hit[None, :]).sum(axis=1) if mode == "thumos14" else np.zeros(len(thresholds), int)
    report.update(duplicate_gt_removed=n_dup, ambiguous_ignored=[int(x) for x in ignored_amb])
    return _result(thresholds, labels, ap, recall, report, mode, max_dets, len(actions), len(dets), gt.warnings)


def _result(thresholds, labels, ap, recall, report, mode, max_dets, n_gt, n_dets, warnings) -> dict:
    """The JSON-ready result dict shared by both implementations; ap (C, T), recall {k: (T,)}."""
    mean_ap = ap.mean(axis=0) if len(labels) else np.zeros(len(thresholds))  # (T,)
    report.update(mode=mode, max_dets=max_dets, gt_instances=int(n_gt), evaluated_predictions=int(n_dets),
                  gt_warnings=list(warnings))
    return {
        "thresholds": [round(float(t), 2) for t in thresholds],
        "mAP": [float(x) for x in mean_ap],
        "average_mAP": float(mean_ap.mean()),
        "per_class_AP": {label: [float(x) for x in ap[c]] for c, label in enumerate(labels)},
        "recall": {f"{k}x": [float(x) for x in r] for k, r in recall.items()},
        "report": report,
    }
