"""Change points per video (rates, penalised choice) in the TSCProposals stage function, the ablation sources
(random change points with the same counts, ground-truth boundaries) and the boundary channels."""
from __future__ import annotations

import numpy as np
import pytest

from tal_pipeline.stages.bapg.boundary_sources import oracle_change_points
from tal_pipeline.stages.bapg.proposal_features import NEAREST_CLIP, boundary_aware_features, boundary_channels
from tal_pipeline.stages.bapg.proposal_store import read_change_points, read_scales
from tal_pipeline.stages.bapg.proposal_table import proposals_from_change_points
from tal_pipeline.stages.bapg.proposals import tsc_proposals_to_store
from tal_pipeline.stages.bapg.scales import Scales
from tal_pipeline.stages.bapg.similarity import write_similarity
from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.storage.features import write_features
from tal_pipeline.storage.zarr_store import ArtifactStore

GRID = TimeGrid(fps=8.0, window=4, stride=4)  # 2 steps per second
RATES = Scales(rates=[4.0, 10.0])  # change points per minute: a 60 s video gets 4 and 10, a 240 s one 16 and 40


def _regimes(T: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(0, n, size=T))
    return (rng.normal(size=(n, 16))[labels] + 0.3 * rng.normal(size=(T, 16))).astype(np.float32)


@pytest.fixture
def stores(tmp_path):
    paths = {k: tmp_path / f"{k}.zarr" for k in ("features", "similarity", "tsc", "random", "oracle")}
    for p in paths.values():
        ArtifactStore(p).begin({"stage": "t", "params": {}})
    for video, T in (("short", 120), ("long", 480)):  # 60 s and 240 s
        x = _regimes(T, 12, seed=T)
        write_features(paths["features"], video, x, GRID)
        write_similarity(paths["similarity"], video, x, GRID, block=64)
    return paths


def test_rates_give_longer_videos_more_change_points(stores):
    for video in ("short", "long"):
        tsc_proposals_to_store(video, store_path=str(stores["tsc"]), similarity_store=str(stores["similarity"]),
                               scales=Scales(ms=[3], rates=[4.0, 10.0], penalty=1.0))
    short, long_ = read_scales(str(stores["tsc"]), "short"), read_scales(str(stores["tsc"]), "long")
    assert [n for n, _ in short] == ["m=3", "4/min", "10/min", "penalty 1"]
    assert [len(c) for _, c in short][:3] == [3, 4, 10] and [len(c) for _, c in long_][:3] == [3, 16, 40]
    assert Scales(ms=[3], rates=[4.0, 10.0]).counts(480, 240.0) == [3, 16, 40]
    # the scales of one video come from one DP: the same count gives the same (optimal) change points
    from tal_pipeline.stages.bapg.tsc import change_points

    S = ArtifactStore(stores["similarity"]).read("long")[...]
    for _, cps in long_:
        np.testing.assert_array_equal(cps, change_points(S, ms=[len(cps)])[len(cps)])


def test_random_ablation_keeps_the_counts_and_is_random(stores):
    for video in ("short", "long"):
        tsc_proposals_to_store(video, store_path=str(stores["tsc"]), similarity_store=str(stores["similarity"]),
                               scales=RATES)
        tsc_proposals_to_store(video, store_path=str(stores["random"]), source="random", tsc_store=str(stores["tsc"]),
                               scales=RATES, seed=0)
    for video in ("short", "long"):
        tsc, rnd = read_scales(str(stores["tsc"]), video), read_scales(str(stores["random"]), video)
        assert [(n, len(c)) for n, c in tsc] == [(n, len(c)) for n, c in rnd]  # same scales, same counts
        assert any(not np.array_equal(a, b) for (_, a), (_, b) in zip(tsc, rnd))
        T = int(read_change_points(str(stores["random"]), video)[1]["num_steps"])
        for _, c in rnd:
            assert np.all(np.diff(c) > 0) and c[0] > 0 and c[-1] < T
    # different videos draw different positions; the same video and seed draws the same again
    a = read_scales(str(stores["random"]), "long")[0][1]
    for seed in (0, 1):
        again = stores["tsc"].parent / f"random{seed}.zarr"
        ArtifactStore(again).begin({"stage": "t", "params": {}})
        tsc_proposals_to_store("long", store_path=str(again), source="random", tsc_store=str(stores["tsc"]),
                               scales=RATES, seed=seed)
        assert np.array_equal(read_scales(str(again), "long")[0][1], a) == (seed == 0)


def test_oracle_boundaries_match_the_annotations(stores):
    # actions over steps [10, 30) and [50, 51) of "long": seconds from the time grid (step i spans its centre +- 0.25 s)
    half = 0.5 * GRID.step_seconds
    gt = np.array([[GRID.to_seconds(10) - half, GRID.to_seconds(29) + half],
                   [GRID.to_seconds(50) - half, GRID.to_seconds(50) + half]])
    np.testing.assert_array_equal(oracle_change_points(gt, 480, GRID.fps, GRID.window, GRID.stride), [10, 30, 50, 51])
    tsc_proposals_to_store("long", store_path=str(stores["oracle"]), source="oracle",
                           features_store=str(stores["features"]), scales=RATES, gt_seconds={"long": gt})
    scales = read_scales(str(stores["oracle"]), "long")
    assert [n for n, _ in scales] == ["4/min", "10/min"]
    assert all(np.array_equal(c, [10, 30, 50, 51]) for _, c in scales)
    table = proposals_from_change_points({4: scales[0][1]}, 480, GRID)
    for start, end in gt:  # every ground truth is exactly a proposal
        assert ((table["start"] - start).abs() < 1e-9).mul((table["end"] - end).abs() < 1e-9).any()


def test_boundary_channels_known_answer():
    ch = boundary_channels(np.array([3, 7]), 10)  # segments [0,3) [3,7) [7,10)
    np.testing.assert_allclose(ch[:, 0], [1 / 6, 0.5, 5 / 6, 1 / 8, 3 / 8, 5 / 8, 7 / 8, 1 / 6, 0.5, 5 / 6], rtol=1e-6)
    np.testing.assert_allclose(ch[:, 1], np.log1p([0, 1, 2, 0, 1, 2, 3, 0, 1, 2]), rtol=1e-6)
    np.testing.assert_allclose(ch[:, 2], np.log1p([2, 1, 0, 3, 2, 1, 0, 2, 1, 0]), rtol=1e-6)
    # signed distance to the nearest boundary (at 2.5 and 6.5): negative before it, positive after
    np.testing.assert_allclose(ch[:, 3], [-2.5, -1.5, -0.5, 0.5, 1.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    far = boundary_channels(np.array([], dtype=np.int64), 30)
    assert np.all(far[:, 3] == NEAREST_CLIP) and np.all(boundary_channels(np.array([1]), 40)[20:, 3] == NEAREST_CLIP)
    B = boundary_aware_features(np.zeros((10, 2), np.float32), [("a", np.array([3, 7]))])
    np.testing.assert_array_equal(B[:, 2:], ch)


def test_proposal_contrast_ranks_the_coherent_span_first():
    from tal_pipeline.stages.bapg.proposal_scoring import proposal_contrast, soft_nms_rank

    # three regimes: [0, 10) background A, [10, 20) action B, [20, 30) background A again
    x = np.zeros((30, 2))
    x[:, 0] = 1.0
    x[10:20] = [0.0, 1.0]
    S = x @ x.T  # (30, 30) cosine similarity of unit rows
    a, b = np.array([10, 5, 0, 12]), np.array([20, 20, 30, 18])
    score = proposal_contrast(S, a, b, block_rows=7)
    # the exact action: inside 1, context 0 -> 1; half background -> lower; the whole video has no context
    np.testing.assert_allclose(score[0], 1.0)
    assert score[0] > score[1] and score[0] > score[3]
    np.testing.assert_allclose(score[2], S.mean())  # no side context: the inside mean
    # direct computation of one value: [5, 20) against [0, 5) and [20, 30)
    inside = S[5:20, 5:20].mean()
    np.testing.assert_allclose(score[1], inside - max(S[5:20, 0:5].mean(), S[5:20, 20:30].mean()))
    order, decayed = soft_nms_rank(np.stack([a, b], 1), score, sigma=1.0)
    assert order[0] == 0 and np.all(np.diff(decayed) <= 1e-12)
