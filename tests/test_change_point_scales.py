"""Change-point scales (stages/bapg/scales.py): one conversion of the parameters, the names stores and reports
carry, the counts per video (rates per minute of the feature span), and every scale from one DP pass."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from tal_pipeline.stages.bapg.scales import Scales, count_name, counts_from_rates, tsc_scales
from tal_pipeline.stages.bapg.tsc import change_points, penalised_count, segment
from tests.reference_similarity import cosine_similarity_matrix


def test_counts_from_rates():
    # the longest THUMOS14 video: 1673 s, 12548 steps; 30 per minute -> round(836.5) = 836 (half to even)
    assert counts_from_rates(12548, 1673.0, [30]) == [836]
    rates = [2, 10, 30]
    short, long = counts_from_rates(300, 40.0, rates), counts_from_rates(3000, 400.0, rates)
    assert short == [1, 7, 20] and long == [13, 67, 200]
    assert all(b > a for a, b in zip(short, long))
    # order kept, duplicates kept, the minimum, the cap at what fits
    assert counts_from_rates(300, 40.0, [30, 2, 2]) == [20, 1, 1]
    assert counts_from_rates(300, 6.0, [1, 2]) == [1, 1]
    assert counts_from_rates(300, 6.0, [1], minimum=0) == [0]
    assert counts_from_rates(20, 600.0, [30, 60]) == [19, 19]
    assert counts_from_rates(20, 600.0, [30], min_size=4) == [4]
    assert counts_from_rates(1, 60.0, [30]) == [0]
    with pytest.raises(ValueError, match="rates"):
        counts_from_rates(100, 10.0, [-1])


def test_one_conversion_whatever_the_source_gives():
    # luigi hands tuples of what the config parsed (ints for "[8, 16, 32]"), a recipe tuples, a caller lists
    from_luigi = Scales((10,), (8, 16, 32), 0.0, 1)
    from_caller = Scales(ms=[10], rates=[8.0, 16.0, 32.0], penalty=0, min_size=1)
    assert from_luigi == from_caller and hash(from_luigi) == hash(from_caller)
    assert asdict(from_luigi) == {"ms": (10,), "rates": (8.0, 16.0, 32.0), "penalty": 0.0, "min_size": 1}
    assert all(type(r) is float for r in from_luigi.rates) and type(from_luigi.ms[0]) is int
    assert type(from_luigi.penalty) is float and type(Scales(min_size=np.int64(2)).min_size) is int


def test_names_are_the_stored_ones():
    assert Scales(ms=[10, 15], rates=[8, 16.0, 2.5], penalty=1).names() == \
        ["m=10", "m=15", "8/min", "16/min", "2.5/min", "penalty 1"]
    assert Scales(rates=[32.0], penalty=0.5).names() == ["32/min", "penalty 0.5"]
    assert Scales(rates=[8.0]).names() == ["8/min"] and Scales().names() == []
    assert count_name(np.int64(20)) == "m=20"


def test_counts_per_video():
    scales = Scales(ms=[3, 500], rates=[4.0, 10.0])
    # 480 steps over 240 s: 16 and 40 change points; a fixed count is capped to the 479 that fit
    assert scales.counts(480, 240.0) == [3, 479, 16, 40]
    assert Scales(ms=[3], rates=[10.0]).counts(120, 60.0) == [3, 10]
    assert Scales(ms=[30], min_size=4).counts(100, 50.0) == [24]  # 100 // 4 - 1
    assert Scales(penalty=1.0).counts(100, 50.0) == []  # the penalised count needs the DP


def test_tsc_scales_come_from_one_dp_pass():
    rng = np.random.default_rng(0)
    labels = np.sort(rng.integers(0, 8, size=160))
    S = cosine_similarity_matrix(rng.normal(size=(8, 6))[labels] + 0.4 * rng.normal(size=(160, 6)))
    scales = Scales(ms=[3], rates=[4.0, 10.0], penalty=1.0)
    found = tsc_scales(S, 80.0, scales, name="v")  # 80 s: 5 and 13 change points
    assert [n for n, _ in found] == ["m=3", "4/min", "10/min", "penalty 1"]
    assert [len(c) for _, c in found][:3] == [3, 5, 13]
    for _, cps in found[:3]:  # each count's optimum, as a pass for that count alone finds it
        np.testing.assert_array_equal(cps, change_points(S, ms=[len(cps)])[len(cps)])
    # the penalised scale searches up to the largest count
    assert len(found[3][1]) == penalised_count(segment(S, 13), 1.0)
    with pytest.raises(ValueError, match="'v'.*no scale"):
        tsc_scales(S, 80.0, Scales(), name="'v'")
