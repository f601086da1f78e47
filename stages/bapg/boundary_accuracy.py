"""Boundary accuracy of change points, measured directly: precision, recall and F1 within +-k feature steps.

Conventions (those of stages/bapg/tsc.py and stages/bapg/proposals.py):

- A change point c (0 < c < T) is the first step of a new segment: the boundary lies between steps c-1 and c.
- A ground-truth boundary is an action's start or end time s in seconds, placed on the same grid as the
  `oracle` boundary source: the step boundary nearest to s, c = round(seconds_to_feature(s) + 0.5)
  (`gt_boundary_steps` calls proposals.oracle_change_points). Boundaries that fall on the same step (an
  action ending where the next one starts) count once, and those at 0 or T (the video's ends, which no change
  point can mark) are dropped.

Matching is one-to-one: a predicted change point p and a ground-truth boundary g may match when |p - g| <= k,
each is used at most once, and tp is the size of a maximum matching. On sorted 1-D points the two-pointer
sweep in `match_count` finds one (exchange argument: if the leftmost remaining p and g are within k, some
maximum matching pairs them, since swapping their partners p', g' (p' >= p, g' >= g) keeps both pairs within
k; if not, the leftmost one lies more than k before every remaining point of the other side and matches
nothing). A greedy match by increasing distance is not optimal: k = 2, g = [0, 3], p = [2, 5] pairs 3-2
first and then finds 1 match instead of 2 (tests/test_boundary_accuracy.py checks both against brute force).

Empty cases (no NaN anywhere):
    precision = tp / n_pred,  1.0 when n_pred = 0 (no prediction was wrong)
    recall    = tp / n_true,  1.0 when n_true = 0 (no boundary was missed)
    F1        = 2 tp / (n_pred + n_true)   (= harmonic mean of precision and recall when tp > 0),
                0 whenever tp = 0 and either side is non-empty, 1.0 when both are empty.
The aggregate over videos sums tp, n_pred and n_true first (micro average): videos with more boundaries
weigh more, and a video's empty case contributes nothing rather than a vacuous 1.0.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_TOLERANCES = (1, 2)


@dataclass(frozen=True)
class BoundaryCounts:
    """Matches of one video (or a sum over videos) at one tolerance (in feature steps)."""
    tolerance: int
    tp: int
    n_pred: int
    n_true: int

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 1.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_true if self.n_true else 1.0

    @property
    def f1(self) -> float:
        total = self.n_pred + self.n_true
        return 2.0 * self.tp / total if total else 1.0

    def __add__(self, other: BoundaryCounts) -> BoundaryCounts:
        if other.tolerance != self.tolerance:
            raise ValueError(f"cannot add counts at tolerance {self.tolerance} and {other.tolerance}")
        return BoundaryCounts(self.tolerance, self.tp + other.tp, self.n_pred + other.n_pred,
                              self.n_true + other.n_true)


def gt_boundary_steps(gt_seconds, num_steps: int, fps: float, window: int, stride: int) -> np.ndarray:
    """Ground-truth boundaries of one video as change-point steps: (B,) int64 ascending, unique, in (0, T).

    gt_seconds: (G, 2) action [start, end] in seconds. The same placement as the `oracle` boundary source
    (boundary_sources.oracle_change_points): deduplicated, the video's ends dropped.
    """
    from tal_pipeline.stages.bapg.boundary_sources import oracle_change_points

    gt = np.asarray(gt_seconds, dtype=np.float64).reshape(-1, 2)  # (G, 2)
    return oracle_change_points(gt, int(num_steps), fps, window, stride)


def _points(values, what: str) -> np.ndarray:
    x = np.asarray(values).reshape(-1)
    if x.size and not np.issubdtype(x.dtype, np.integer):
        if not np.all(np.isfinite(x)) or np.any(x != np.round(x)):
            raise ValueError(f"{what} must be integer steps, got {x.tolist()[:10]}")
    x = np.sort(x.astype(np.int64))  # (n,)
    if x.size > 1 and np.any(np.diff(x) == 0):
        raise ValueError(f"{what} must be distinct steps, got duplicates in {x.tolist()[:10]}")
    return x


def match_count(predicted, truth, tolerance: int) -> int:
    """Size of a maximum one-to-one matching between predicted and true steps with |p - g| <= tolerance.

    predicted, truth: distinct integer steps (any order). Two-pointer sweep over the sorted points, O(n log n)
    (optimal: see the module docstring).
    """
    if int(tolerance) < 0:
        raise ValueError(f"tolerance must be >= 0 steps, got {tolerance}")
    p, g = _points(predicted, "predicted change points"), _points(truth, "ground-truth boundaries")
    k = int(tolerance)
    i = j = tp = 0
    while i < len(p) and j < len(g):
        if p[i] < g[j] - k:  # p[i] is too early for g[j] and every later g
            i += 1
        elif g[j] < p[i] - k:  # g[j] is too early for p[i] and every later p
            j += 1
        else:  # within tolerance: some maximum matching pairs these two leftmost points
            tp += 1
            i += 1
            j += 1
    return tp


def boundary_counts(predicted, truth, tolerances=DEFAULT_TOLERANCES) -> dict[int, BoundaryCounts]:
    """{tolerance: BoundaryCounts} of one video: predicted change points vs its ground-truth boundary steps."""
    p, g = _points(predicted, "predicted change points"), _points(truth, "ground-truth boundaries")
    return {int(k): BoundaryCounts(int(k), match_count(p, g, int(k)), len(p), len(g)) for k in tolerances}


def micro_average(per_video: Iterable[Mapping[int, BoundaryCounts]]) -> dict[int, BoundaryCounts]:
    """{tolerance: counts summed over videos}: the micro average (precision, recall, F1 of the sums)."""
    total: dict[int, BoundaryCounts] = {}
    for counts in per_video:
        for k, c in counts.items():
            total[k] = total[k] + c if k in total else c
    return total


def boundary_accuracy_table(change_points: Mapping[str, Mapping[str, np.ndarray]],
                            gt_steps: Mapping[str, np.ndarray], tolerances=DEFAULT_TOLERANCES,
                            per_video: bool = False) -> pd.DataFrame:
    """Boundary precision/recall/F1 of every scale, micro-averaged over the videos of gt_steps.

    change_points: {video: {scale name: (m,) change points}} (e.g. proposals.read_scales of each video, as a
        dict); gt_steps: {video: (B,) boundary steps} (gt_boundary_steps). Every video of gt_steps must have
        change points. Returns one row per (scale, tolerance) with video "all" (the micro average), and with
        per_video=True one more row per (video, scale, tolerance) first. Columns: video, scale, tolerance, tp,
        n_pred, n_true, precision, recall, f1.
    """
    missing = sorted(set(gt_steps) - set(change_points))
    if missing:
        raise ValueError(f"no change points for videos {missing[:10]}")
    rows, sums = [], {}
    for video, truth in gt_steps.items():
        for scale, cps in change_points[video].items():
            counts = boundary_counts(cps, truth, tolerances)
            sums.setdefault(scale, []).append(counts)
            if per_video:
                rows += [(video, scale, c) for c in counts.values()]
    rows += [("all", scale, c) for scale, runs in sums.items() for c in micro_average(runs).values()]
    return pd.DataFrame([{"video": v, "scale": s, "tolerance": c.tolerance, "tp": c.tp, "n_pred": c.n_pred,
                          "n_true": c.n_true, "precision": c.precision, "recall": c.recall, "f1": c.f1}
                         for v, s, c in rows],
                        columns=["video", "scale", "tolerance", "tp", "n_pred", "n_true", "precision", "recall",
                                 "f1"])


def boundary_accuracy_from_store(store_path: str, gt_by_video: Mapping[str, np.ndarray],
                                 tolerances=DEFAULT_TOLERANCES) -> pd.DataFrame:
    """Boundary precision/recall/F1 of every scale cached in a TSCProposals store, over the videos of gt_by_video.

    gt_by_video: {video: (G, 2) action [start, end] in seconds}; each video's time grid and number of steps
    come from its proposal array's attributes, so the ground truth is placed exactly as the oracle source does.
    """
    from tal_pipeline.stages.bapg.proposal_store import read_change_points, read_scales
    from tal_pipeline.stages.data.timegrid import TimeGrid

    change_points, gt_steps = {}, {}
    for video, gt in gt_by_video.items():
        _, attrs = read_change_points(store_path, video)
        grid = TimeGrid.from_attrs(attrs, f"video {video!r}")
        change_points[video] = dict(read_scales(store_path, video))
        gt_steps[video] = gt_boundary_steps(gt, int(attrs["num_steps"]), grid.fps, grid.window, grid.stride)
    return boundary_accuracy_table(change_points, gt_steps, tolerances)
