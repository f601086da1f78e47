"""TSC (kernel change-point DP on a similarity matrix) against brute force and ruptures, and the segment CLI."""
from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest

from stages.tsc import change_points, cosine_similarity, segment_cost, segmentation_cost


def brute_force(S: np.ndarray, m: int, min_size: int = 1):
    """All segmentations into m+1 segments of length >= min_size: (least cost, its change points)."""
    T = S.shape[0]
    best = (np.inf, None)
    for cps in itertools.combinations(range(1, T), m):
        if min(np.diff([0, *cps, T])) < min_size:
            continue
        cost = segmentation_cost(S, cps)
        if cost < best[0] - 1e-12:  # strict: the first in enumeration order wins a (numerical) tie
            best = (cost, cps)
    return best


def test_segment_cost_by_hand():
    S = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 1.0]])
    # v(0, 2) = (1 + 1) - (1 + 0.5 + 0.5 + 1) / 2 = 0.5 ; v(0, 3) = 3 - 4.4 / 3
    assert segment_cost(S, 0, 2) == pytest.approx(0.5)
    assert segment_cost(S, 0, 3) == pytest.approx(3 - 4.4 / 3)
    assert segment_cost(S, 1, 2) == 0.0


@pytest.mark.parametrize("min_size", [1, 2])
def test_dp_equals_brute_force(min_size):
    rng = np.random.default_rng(7)
    for _ in range(25):
        T = int(rng.integers(2, 10))
        S = cosine_similarity(rng.normal(size=(T, 3)))  # (T, T)
        ms = list(range(0, T // min_size))
        result = change_points(S, ms=ms, min_size=min_size, block_rows=int(rng.integers(1, 5)))
        for m in ms:
            cost, cps = brute_force(S, m, min_size)
            assert tuple(result[m].tolist()) == cps, (T, m)
            assert segmentation_cost(S, result[m]) == pytest.approx(cost, abs=1e-9)
            assert result[m].dtype == np.int64


def test_asymmetric_matrix_uses_block_sums():
    # the cost only sees block sums, so S and (S + S^T) / 2 must give the same segmentation
    rng = np.random.default_rng(3)
    S = rng.normal(size=(8, 8))
    sym = (S + S.T) / 2
    for m in range(1, 5):
        got = change_points(S, ms=[m], block_rows=3)[m]
        assert np.array_equal(got, change_points(sym, ms=[m])[m])
        assert tuple(got.tolist()) == brute_force(S, m)[1]


@pytest.mark.parametrize("min_size", [1, 3])
def test_equals_ruptures_kernelcpd(min_size):
    rpt = pytest.importorskip("ruptures")
    rng = np.random.default_rng(11)
    # embeddings with real regimes plus noise: 6 regimes over 300 steps
    centers = rng.normal(size=(6, 16))
    labels = np.repeat(np.arange(6), rng.multinomial(300 - 6 * 10, np.ones(6) / 6) + 10)
    X = centers[labels] + 0.8 * rng.normal(size=(300, 16))  # (300, 16)
    S = cosine_similarity(X)  # (300, 300)
    ms = (3, 5, 10, 15)
    ours = change_points(S, ms=ms, min_size=min_size, block_rows=64)
    # ruptures' KernelCPD defaults to min_size=2: pass ours; its cosine kernel is x.y / (|x||y|) = S
    algo = rpt.KernelCPD(kernel="cosine", min_size=min_size).fit(X)
    for m in ms:
        assert ours[m].tolist() == algo.predict(n_bkps=m)[:-1], m
    # the true regime boundaries are found with 5 change points
    assert ours[5].tolist() == np.flatnonzero(np.diff(labels)).__add__(1).tolist()


def test_ties_take_earliest_change_points():
    # constant S: every segmentation costs exactly 0 -> the documented rule picks the earliest positions
    S = np.ones((6, 6))
    res = change_points(S, ms=[1, 2, 3])
    assert res[1].tolist() == [1] and res[2].tolist() == [1, 2] and res[3].tolist() == [1, 2, 3]
    res = change_points(S, ms=[2], min_size=2)
    assert res[2].tolist() == [2, 4]
    # two identical blocks [0,2) and [2,4) of value 1, cross-similarity 0: splitting at 2 is the unique optimum
    # for m = 1; with m = 2 the extra change point costs nothing anywhere -> earliest last change point
    B = np.kron(np.eye(2), np.ones((2, 2)))  # (4, 4)
    res = change_points(B, ms=[1, 2])
    assert res[1].tolist() == [2]
    assert res[2].tolist() == [1, 2]


def test_more_change_points_than_fit_warns_and_returns_fewer():
    S = np.eye(4)
    with pytest.warns(RuntimeWarning, match="do not fit"):
        res = change_points(S, ms=[2, 5], min_size=1)
    assert res[2].shape == (2,) and res[5].tolist() == [1, 2, 3]
    with pytest.warns(RuntimeWarning, match="min_size = 3"):
        res = change_points(np.eye(7), ms=[3], min_size=3)
    assert len(res[3]) == 1 and 3 <= res[3][0] <= 4
    with pytest.warns(RuntimeWarning):
        assert change_points(np.ones((1, 1)), ms=[1])[1].tolist() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert change_points(np.eye(4), ms=[0])[0].tolist() == []


def test_min_size_respected():
    rng = np.random.default_rng(5)
    S = cosine_similarity(rng.normal(size=(60, 4)))
    for min_size in (2, 5, 7):
        res = change_points(S, ms=[3, 6], min_size=min_size)
        for cps in res.values():
            assert np.diff([0, *cps.tolist(), 60]).min() >= min_size
    # with min_size 1 random data picks some length-1 segments; min_size must change that answer
    assert np.diff([0, *change_points(S, ms=[6])[6].tolist(), 60]).min() < 5


@pytest.mark.parametrize("where", [(3, 3), (2, 9), (9, 2)])
def test_non_finite_raises(where):
    S = np.eye(12)
    S[where] = np.nan
    with pytest.raises(ValueError, match=rf"video_x: .*non-finite value \(nan\) at \[{where[0]}, {where[1]}\]"):
        change_points(S, ms=[2], block_rows=4, name="video_x")
    S[where] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        change_points(S.astype(np.float16), ms=[2], block_rows=5)


def test_bad_shapes_and_arguments():
    with pytest.raises(ValueError, match="square"):
        change_points(np.ones((3, 4)))
    with pytest.raises(ValueError, match="square"):
        change_points(np.ones(3))
    with pytest.raises(ValueError, match="min_size"):
        change_points(np.eye(3), min_size=0)
    with pytest.raises(ValueError, match=">= 0"):
        change_points(np.eye(3), ms=[-1])


def test_blockwise_zarr_and_memmap_equal_in_memory(tmp_path):
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(2)
    S = cosine_similarity(rng.normal(size=(257, 8))).astype(np.float16)  # (257, 257) as the stage stores it
    expected = change_points(S.astype(np.float64), ms=(4, 8, 12))
    z = zarr.create_array(store=str(tmp_path / "s.zarr"), shape=S.shape, chunks=(64, 64), dtype="float16")
    z[:] = S
    np.save(tmp_path / "s.npy", S)
    mm = np.load(tmp_path / "s.npy", mmap_mode="r")
    for source, rows in ((z, 64), (z, 100), (mm, 7), (S, 1000)):
        got = change_points(source, ms=(4, 8, 12), block_rows=rows)
        for m in (4, 8, 12):
            assert np.array_equal(got[m], expected[m]), (type(source), rows, m)


def test_cli_json_and_errors(tmp_path, capsys):
    from pipeline.cli import main

    rng = np.random.default_rng(4)
    S = cosine_similarity(rng.normal(size=(40, 5)))
    path = tmp_path / "sim.npy"
    np.save(path, S)
    assert main(["segment", "--similarity", str(path), "--m", "2,5", "--min-size", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = change_points(S, ms=(2, 5), min_size=2)
    assert out == {"2": expected[2].tolist(), "5": expected[5].tolist()}
    assert main(["segment", "--similarity", str(path), "--m", "3"]) == 0
    assert capsys.readouterr().out.strip() == "m=3: " + " ".join(map(str, change_points(S, ms=[3])[3]))
    # errors: one line naming the file, exit 2
    bad = tmp_path / "nan.npy"
    S[5, 7] = np.nan
    np.save(bad, S)
    for target, message in ((bad, "non-finite"), (tmp_path / "missing.npy", "not found")):
        assert main(["segment", "--similarity", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert str(target) in err and message in err and len(err.splitlines()) == 1
    np.save(tmp_path / "rect.npy", np.ones((3, 4)))
    assert main(["segment", "--similarity", str(tmp_path / "rect.npy")]) == 2
    assert "square" in capsys.readouterr().err
