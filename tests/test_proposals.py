"""TSC proposals (segments + unions, seconds, dedup) and proposal recall on hand-checked cases."""
from __future__ import annotations

import numpy as np
import pytest

from tal_pipeline.stages.bapg.proposal_recall import proposal_recall, recall_by_m
from tal_pipeline.stages.bapg.proposal_table import proposals_from_change_points
from tal_pipeline.stages.data.timegrid import TimeGrid

# fps 10, window 16, stride 4: feature i is centred at 0.4 i + 0.8 s, one step is 0.4 s, so the span of
# steps [a, b) is [0.4 a + 0.6, 0.4 b + 0.6] s
GRID = TimeGrid(fps=10.0, window=16, stride=4)


def test_proposals_hand_checked_seconds_unions_and_dedup():
    table = proposals_from_change_points({2: np.array([4, 7]), 1: np.array([4])}, num_steps=10, duration=4.5,
                                         max_union=3, grid=GRID)
    assert list(table.columns) == ["start", "end", "start_step", "end_step", "m", "n_segments", "score"]
    spans = list(zip(table.start_step, table.end_step, table.m, table.n_segments))
    # m = 1 first: its 2 segments and their union; then m = 2's new spans only ([0,4), [4,10), [0,10) are dups)
    assert spans == [(0, 4, 1, 1), (4, 10, 1, 1), (0, 10, 1, 2), (4, 7, 2, 1), (7, 10, 2, 1), (0, 7, 2, 2)]
    np.testing.assert_allclose(table.start, [0.6, 2.2, 0.6, 2.2, 3.4, 0.6])
    np.testing.assert_allclose(table.end, [2.2, 4.5, 4.5, 3.4, 4.5, 3.4])  # 4.6 clipped to the 4.5 s duration
    assert table.attrs["dedup"] is True


def test_union_limit_and_no_dedup():
    cps = {3: np.array([2, 5, 8])}
    full = proposals_from_change_points(cps, num_steps=10, max_union=4, grid=GRID)
    assert len(full) == 4 + 3 + 2 + 1  # segments, pairs, triples, the whole video
    two = proposals_from_change_points(cps, num_steps=10, max_union=2, grid=GRID)
    assert two.n_segments.max() == 2 and len(two) == 4 + 3
    both = proposals_from_change_points({1: np.array([5]), 3: np.array([2, 5, 8])}, num_steps=10, max_union=1,
                                        dedup=False, grid=GRID)
    assert len(both) == 2 + 4 and both.attrs["dedup"] is False
    assert len(proposals_from_change_points({1: np.array([5]), 3: np.array([2, 5, 8])}, num_steps=10, max_union=1,
                                            grid=GRID)) == 2 + 4  # no shared span here
    shared = {1: np.array([5]), 2: np.array([5, 8])}
    # [0,5) once: [0,5), [5,10), [5,8), [8,10)
    assert len(proposals_from_change_points(shared, num_steps=10, max_union=1, grid=GRID)) == 4
    assert len(proposals_from_change_points(shared, num_steps=10, max_union=1, dedup=False, grid=GRID)) == 5
    # no duration: only the 0 s floor applies
    t = proposals_from_change_points({0: np.array([], dtype=np.int64)}, num_steps=3, grid=TimeGrid(1.0, 1, 1))
    assert t.start.tolist() == [0.0] and t.end.tolist() == [3.0]


def test_bad_change_points_rejected():
    with pytest.raises(ValueError, match="ascending"):
        proposals_from_change_points({2: np.array([5, 3])}, num_steps=10, grid=GRID)
    with pytest.raises(ValueError, match="ascending"):
        proposals_from_change_points({1: np.array([10])}, num_steps=10, grid=GRID)


def test_recall_hand_made():
    proposals = {"v": np.array([[0.0, 10.0], [22.0, 30.0], [50.0, 60.0]]), "extra": np.array([[0.0, 1.0]])}
    gt = {"v": np.array([[0.0, 10.0], [20.0, 30.0]]), "w": np.array([[0.0, 5.0]])}  # w has no proposals
    r = proposal_recall(proposals, gt, ans=(1, 2, 100))
    assert r["n_gt"] == 3
    # AN=1: only [0,10] recalled (tIoU 1); the second gt has tIoU 0.8 with proposal 2: recalled at 7 of 10
    assert r["AR@AN"][1] == pytest.approx(1 / 3)
    assert r["AR@AN"][2] == pytest.approx((10 + 7) / 30)
    assert r["AR@AN"][100] == pytest.approx((10 + 7) / 30)
    assert r["recall@0.5"] == pytest.approx(2 / 3) and r["recall@0.7"] == pytest.approx(2 / 3)
    assert r["recall_by_tiou"][0.8] == pytest.approx(2 / 3) and r["recall_by_tiou"][0.85] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no ground-truth"):
        proposal_recall(proposals, {"v": np.zeros((0, 2))})


def test_recall_by_m():
    # 10 steps of 1 s: gt [0, 5) s is segment [0,5) of m=1; with m=2 only the union of [0,2) and [2,5)
    grid = TimeGrid(fps=1.0, window=1, stride=1)
    cps = {1: np.array([5]), 2: np.array([2, 5])}
    table = proposals_from_change_points(cps, num_steps=10, max_union=1, dedup=False, grid=grid)
    rows = recall_by_m({"v": table}, {"v": np.array([[0.0, 5.0]])}, ans=(1, 10)).set_index("m")
    assert rows.loc[1, "recall@0.7"] == 1.0 and rows.loc[2, "recall@0.7"] == 0.0
    assert rows.loc["all", "proposals_per_video"] == 4.0  # [0,5), [5,10), [0,2), [2,5)
    assert rows.loc["all", "AR@1"] == 1.0
    with pytest.raises(ValueError, match="dedup=False"):
        recall_by_m({"v": proposals_from_change_points(cps, num_steps=10, grid=grid)}, {"v": np.array([[0.0, 5.0]])})
