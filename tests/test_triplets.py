"""The batch-at-once triplet sampler (issue 28 item 4) draws what the per-sample loop it replaces drew, in
distribution: the same pools, classes per visit, anchor / positive / negative / easy-negative frequencies."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from tal_pipeline.stages.bapg.encoder_options import negative_weights
from tal_pipeline.stages.bapg.sample_pools import build_sample_pools
from tal_pipeline.stages.bapg.triplets import TripletSampler
from tal_pipeline.stages.data.timegrid import TimeGrid
from tests.reference_triplets import ReferenceTripletSampler

UNIT = TimeGrid(fps=1.0, window=1, stride=1)


def _pools():
    """Three videos, three classes; instance (7, 8) of w has one step, and x's only action fills the video except
    its edges (no hard negative beyond what the cap allows: the easy-pool fallback)."""
    rows = [("v", 2, 6, "a"), ("v", 12, 17, "b"), ("v", 24, 27, "a"), ("w", 7, 8, "c"), ("w", 15, 26, "b"),
            ("x", 0, 11, "c")]
    table = pd.DataFrame([{"video": v, "label": k, "start": float(s), "end": float(e)} for v, s, e, k in rows])
    return build_sample_pools(table, UNIT, {"v": 32, "w": 30, "x": 12}, 2.0)


def _frequencies(draws: np.ndarray, cols) -> Counter:
    return Counter(map(tuple, draws[:, cols].tolist()))


def _total_variation(a: Counter, b: Counter) -> float:
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


@pytest.mark.parametrize("tau", [0.0, 1.0])
def test_batches_match_the_per_sample_reference_in_distribution(tau):
    pools = _pools()
    weights = negative_weights(pools.instances, UNIT, tau)
    new = TripletSampler(pools, np.random.default_rng(0), 2, True, weights).batch(30000)
    old = ReferenceTripletSampler(pools, np.random.default_rng(1), 2, True, weights).batch(30000)
    again = ReferenceTripletSampler(pools, np.random.default_rng(2), 2, True, weights).batch(30000)
    assert new.shape == old.shape and new.dtype == np.int64
    for cols in ([0, 1], [0, 1, 2], [0, 1, 3], [0, 4]):  # anchors; anchor-positive; anchor-negative; easy ones
        # Within the sampling noise: the distance between two seeds of the reference itself (~0.005-0.03 here;
        # a wrong pool or weight gives > 0.1).
        noise = _total_variation(_frequencies(again, cols), _frequencies(old, cols))
        got = _total_variation(_frequencies(new, cols), _frequencies(old, cols))
        assert got <= max(1.6 * noise, noise + 0.01), (tau, cols, got, noise)


def test_every_triplet_is_valid_and_classes_come_in_visits():
    pools = _pools()
    sampler = TripletSampler(pools, np.random.default_rng(3), 2, True)
    draws = sampler.batch(4001)
    videos = sampler.videos
    label_of = {}
    for vid, a, p, n, e in draws.tolist():
        video = videos[vid]
        inst = [q for q in pools.instances if q.video == video and a in q.positive]
        assert inst, (video, a)
        q = next(q for q in inst if p in q.positive)
        assert p != a or q.positive.size == 1
        assert n in (q.hard_negative if q.hard_negative.size else pools.easy_negative[video])
        assert e == -1 if not pools.easy_negative[video].size else e in pools.easy_negative[video]
        label_of[(vid, a)] = q.label
    labels = [label_of[(vid, a)] for vid, a in draws[:, :2].tolist()]
    single = [q.label for q in pools.instances if q.positive.size == 1]
    assert "c" in single  # the one-step instance: anchor = positive
    visits = [labels[i:i + 2] for i in range(0, 4000, 2)]
    assert all(v[0] == v[1] or ("c" in v and len(set(q.label for q in pools.instances if q.label == "c")) == 1)
               for v in visits)
    assert set(Counter(labels)) == {"a", "b", "c"}
