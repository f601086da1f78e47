"""Boundary precision/recall/F1 within +-k steps (stages/bapg/boundary_accuracy.py) on hand-made change points."""
from __future__ import annotations

import numpy as np
import pytest

from tal_pipeline.stages.bapg.boundary_accuracy import (
    BoundaryCounts,
    boundary_accuracy_table,
    boundary_counts,
    gt_boundary_steps,
    match_count,
    micro_average,
)
from tal_pipeline.stages.bapg.boundary_sources import oracle_change_points


def max_matching(p, g, k) -> int:
    """Maximum bipartite matching by augmenting paths (Kuhn), edges |p - g| <= k: the reference."""
    owner = {}  # g index -> p index

    def augment(i, seen):
        for j, gj in enumerate(g):
            if abs(p[i] - gj) <= k and j not in seen:
                seen.add(j)
                if j not in owner or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return sum(augment(i, set()) for i in range(len(p)))


def greedy_by_distance(p, g, k) -> int:
    """Pairs taken in order of increasing distance: NOT optimal (the counterexample below)."""
    pairs = sorted((abs(a - b), i, j) for i, a in enumerate(p) for j, b in enumerate(g) if abs(a - b) <= k)
    used_p, used_g = set(), set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
    return len(used_p)


def test_exact_hits_and_off_by_one():
    truth = [10, 20, 30, 40]
    c = boundary_counts([10, 21, 32, 45], truth, tolerances=(0, 1, 2))
    assert (c[0].tp, c[1].tp, c[2].tp) == (1, 2, 3)  # 10 exact; 21 within 1; 32 within 2; 45 beyond
    assert c[1].n_pred == 4 and c[1].n_true == 4
    assert c[1].precision == 0.5 and c[1].recall == 0.5 and c[1].f1 == 0.5
    assert c[2].f1 == pytest.approx(2 * 0.75 * 0.75 / 1.5)


def test_one_to_one_two_predictions_near_one_boundary_count_once():
    c = boundary_counts([19, 20, 21], [20], tolerances=(1, 2))
    assert c[1].tp == 1 and c[2].tp == 1
    assert c[1].precision == pytest.approx(1 / 3) and c[1].recall == 1.0
    # and symmetrically: one prediction between two boundaries matches one of them
    assert match_count([15], [14, 16], 1) == 1


def test_sweep_is_optimal_where_greedy_by_distance_is_not():
    p, g = [2, 5], [0, 3]
    assert greedy_by_distance(p, g, 2) == 1  # takes 2-3 (distance 1) first, then 0 and 5 have no partner
    assert match_count(p, g, 2) == 2 == max_matching(p, g, 2)  # 2-0 and 5-3
    rng = np.random.default_rng(0)
    for _ in range(300):
        p = rng.choice(40, size=int(rng.integers(0, 9)), replace=False)
        g = rng.choice(40, size=int(rng.integers(0, 9)), replace=False)
        k = int(rng.integers(0, 4))
        assert match_count(p, g, k) == max_matching(list(p), list(g), k), (sorted(p), sorted(g), k)


def test_empty_inputs_give_no_nan():
    none = boundary_counts([], [], tolerances=(1,))[1]
    assert (none.tp, none.n_pred, none.n_true) == (0, 0, 0)
    assert none.precision == 1.0 and none.recall == 1.0 and none.f1 == 1.0
    no_pred = boundary_counts([], [5, 9], tolerances=(1,))[1]
    assert no_pred.precision == 1.0 and no_pred.recall == 0.0 and no_pred.f1 == 0.0
    no_truth = boundary_counts([5], [], tolerances=(1,))[1]
    assert no_truth.precision == 0.0 and no_truth.recall == 1.0 and no_truth.f1 == 0.0
    miss = boundary_counts([1], [9], tolerances=(2,))[2]
    assert miss.tp == 0 and miss.f1 == 0.0


def test_coinciding_ground_truth_boundaries_count_once():
    # grid fps 1, window 1, stride 1: feature i is centred at i + 0.5 s, so a boundary at s seconds is step round(s)
    gt = np.array([[0.0, 2.0], [3.0, 7.0], [7.0, 9.2], [9.4, 10.0]])  # 7.0: one ends where the next starts
    steps = gt_boundary_steps(gt, num_steps=10, fps=1.0, window=1, stride=1)
    assert steps.tolist() == [2, 3, 7, 9]  # 0 and 10 (the video's ends) dropped; 7 once; 9.2 and 9.4 -> 9
    assert steps.tolist() == oracle_change_points(gt, 10, 1.0, 1, 1).tolist()  # the oracle source's placement
    c = boundary_counts([3, 7, 8], steps, tolerances=(1,))[1]
    assert (c.tp, c.n_pred, c.n_true) == (3, 3, 4)  # 3, 7 and 8 each find a boundary within 1; one is left


def test_thumos_grid_placement():
    # fps 10, window 16, stride 4: feature i is centred at (4 i + 8) / 10 s; 10.2 s is step 23.5 -> change point 24
    assert gt_boundary_steps([[10.2, 20.2]], 100, 10.0, 16, 4).tolist() == [24, 49]


def test_micro_average_sums_counts():
    a = boundary_counts([10, 20], [10, 20], tolerances=(1,))  # 2 / 2 / 2
    b = boundary_counts([5], [50, 60, 70, 80], tolerances=(1,))  # 0 / 1 / 4
    total = micro_average([a, b])[1]
    assert total == BoundaryCounts(1, 2, 3, 6)
    assert total.recall == pytest.approx(2 / 6)  # not the mean of the per-video recalls (1 and 0)
    assert total.f1 == pytest.approx(2 * 2 / 9)
    with pytest.raises(ValueError):
        _ = a[1] + BoundaryCounts(2, 0, 0, 0)


def test_table_per_scale_and_video():
    cps = {"v1": {"m=2": np.array([10, 20]), "m=1": np.array([12])},
           "v2": {"m=2": np.array([5, 60]), "m=1": np.array([59])}}
    gt = {"v1": np.array([10, 20]), "v2": np.array([60])}
    table = boundary_accuracy_table(cps, gt, tolerances=(1, 2), per_video=True)
    row = table[(table.video == "all") & (table.scale == "m=2") & (table.tolerance == 1)].iloc[0]
    assert (row.tp, row.n_pred, row.n_true) == (3, 4, 3)
    row = table[(table.video == "all") & (table.scale == "m=1") & (table.tolerance == 2)].iloc[0]
    assert (row.tp, row.n_pred, row.n_true) == (2, 2, 3)  # 12 is 2 from 10; 59 is 1 from 60
    assert len(table) == 2 * 2 * 2 + 2 * 2 and not table[["precision", "recall", "f1"]].isna().any().any()
    with pytest.raises(ValueError, match="v3"):
        boundary_accuracy_table(cps, {**gt, "v3": np.array([1])})


def test_bad_inputs_refused():
    with pytest.raises(ValueError, match="distinct"):
        match_count([3, 3], [3], 1)
    with pytest.raises(ValueError, match="integer"):
        match_count([3.5], [3], 1)
    with pytest.raises(ValueError, match="tolerance"):
        match_count([3], [3], -1)
