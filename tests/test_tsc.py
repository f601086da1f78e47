"""TSC (kernel change-point DP on a similarity matrix) against brute force and ruptures, and the segment CLI."""
from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest

from tal_pipeline.stages.bapg.tsc import (
    Segmentation,
    change_points,
    penalised_count,
    segment,
)
from tests.reference_similarity import cosine_similarity_matrix as cosine_similarity
from tests.reference_tsc import segment_cost, segmentation_cost


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


def reference_dp(S: np.ndarray, kmax: int, min_size: int = 1):
    """Plain DP (BAPG eq. 5) from a 2-D prefix sum of S: F (kmax+1, T+1) and the smallest argmin a."""
    T = S.shape[0]
    P = np.zeros((T + 1, T + 1))
    P[1:, 1:] = np.cumsum(np.cumsum(S, axis=0), axis=1)
    diag = np.concatenate([[0.0], np.cumsum(np.diag(S))])
    F = np.full((kmax + 1, T + 1), np.inf)
    arg = np.full((kmax + 1, T + 1), -1)
    for b in range(1, T + 1):
        a = np.arange(b)
        v = (diag[b] - diag[a]) - (P[b, b] - P[a, b] - P[b, a] + P[a, a]) / (b - a)  # (b,) v(a, b)
        if b >= min_size:
            F[1, b], arg[1, b] = v[0], 0
        for k in range(2, kmax + 1):
            lo, hi = (k - 1) * min_size, b - min_size
            if lo <= hi:
                cand = F[k - 1, lo:hi + 1] + v[lo:hi + 1]
                arg[k, b] = lo + int(np.argmin(cand))
                F[k, b] = cand.min()
    return F, arg


def backtrack(arg, k, T):
    cps, b = [], T
    for kk in range(k, 1, -1):
        b = int(arg[kk, b])
        cps.append(b)
    return cps[::-1]


@pytest.mark.parametrize("min_size", [1, 2])
def test_segment_equals_brute_force_for_every_count(min_size):
    rng = np.random.default_rng(17)
    for _ in range(20):
        T = int(rng.integers(2, 10))
        S = cosine_similarity(rng.normal(size=(T, 3)))  # (T, T)
        fit = T // min_size - 1
        seg = segment(S, fit + int(rng.integers(0, 3)), min_size=min_size, block_rows=int(rng.integers(1, 6)))
        assert isinstance(seg, Segmentation)
        assert seg.num_steps == T and seg.max_change_points == max(fit, 0) and seg.vmax == pytest.approx(1.0)
        costs = seg.costs()
        assert costs.shape == (seg.max_change_points + 1,)
        if min_size == 1:  # one more change point never costs more (with min_size > 1 it can)
            assert np.all(np.diff(costs) <= 1e-12)
        for m in range(seg.max_change_points + 1):
            cost, cps = brute_force(S, m, min_size)
            assert seg.cost(m) == pytest.approx(cost, abs=1e-9) and costs[m] == seg.cost(m)
            got = seg.change_points(m)
            assert got.dtype == np.int64 and got.shape == (m,) and tuple(got.tolist()) == cps, (T, m)
        # fewer counts asked: the same optima, up to that count only
        small = segment(S, 1, min_size=min_size)
        assert small.max_change_points == min(1, seg.max_change_points)
        assert np.array_equal(small.costs(), costs[:small.max_change_points + 1])


@pytest.mark.parametrize("min_size,block_rows", [(1, 256), (1, 37), (2, 64), (3, 100)])
def test_segment_equals_reference_dp_across_chunks(min_size, block_rows):
    # T > the 128-step chunk of the min-plus kernel, counts not a multiple of the 4-k register block,
    # T not a multiple of the 8 rows joined at a time
    rng = np.random.default_rng(min_size * 100 + block_rows)
    T, kmax = 301, 14
    centers = rng.normal(size=(9, 6))
    S = cosine_similarity(centers[np.sort(rng.integers(0, 9, size=T))] + 0.9 * rng.normal(size=(T, 6)))
    seg = segment(S, kmax - 1, min_size=min_size, block_rows=block_rows)
    F, arg = reference_dp(S, kmax, min_size)
    np.testing.assert_allclose(seg.costs(), F[1:, T], rtol=1e-12, atol=1e-9)
    for m in range(kmax):
        assert seg.change_points(m).tolist() == backtrack(arg, m + 1, T), m


def test_segment_arguments_and_short_video():
    S = cosine_similarity(np.random.default_rng(0).normal(size=(6, 3)))
    seg = segment(S, 3)
    with pytest.raises(ValueError, match="outside"):
        seg.change_points(4)
    with pytest.raises(ValueError, match="outside"):
        seg.cost(-1)
    with pytest.raises(ValueError, match="clip_7: .*>= 0"):
        segment(S, -1, name="clip_7")
    with pytest.raises(ValueError, match="min_size"):
        segment(S, 2, min_size=0)
    # shorter than min_size: one segment, its cost v(0, T)
    short = segment(S[:3, :3], 5, min_size=4)
    assert short.max_change_points == 0 and short.change_points(0).tolist() == []
    assert short.cost(0) == pytest.approx(segment_cost(S[:3, :3], 0, 3))
    # vmax is the mean of the diagonal
    assert segment(2.0 * S, 1).vmax == pytest.approx(2.0)


def kts_criterion(costs: np.ndarray, T: int, vmax: float, penalty: float) -> np.ndarray:
    m = np.arange(len(costs), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pen = np.where(m > 0, penalty * vmax * m / (2 * T) * (np.log(T / m) + 1), 0.0)
    return costs / T + pen


def test_penalised_count_is_the_argmin_of_its_criterion():
    rng = np.random.default_rng(23)
    for trial in range(12):
        T = int(rng.integers(4, 10))
        X = rng.normal(size=(T, 2))
        X[: T // 2] += 3 * rng.normal(size=2)
        S = X @ X.T / 2 + np.diag(rng.uniform(0.5, 2.0, size=T))  # vmax = mean diagonal != 1
        seg = segment(S, T - 1)
        brute = [brute_force(S, m) for m in range(T)]  # [(cost, cps)]
        costs = np.array([c for c, _ in brute])
        for penalty in (0.01, 0.3, 1.0, 5.0):
            crit = kts_criterion(costs, T, float(np.mean(np.diag(S))), penalty)
            chosen = penalised_count(seg, penalty)
            assert crit[chosen] <= crit.min() + 1e-9, (trial, penalty)
            assert tuple(seg.change_points(chosen).tolist()) == brute[chosen][1]
    # penalty 0 -> the most change points; a huge penalty -> none
    assert penalised_count(seg, 0.0) == seg.max_change_points
    assert penalised_count(seg, 1e9) == 0


def test_penalised_count_recovers_regimes_of_a_long_video():
    rng = np.random.default_rng(5)
    K, T = 5, 600
    lengths = rng.multinomial(T - K * 40, np.ones(K) / K) + 40
    labels = np.repeat(np.arange(K), lengths)
    X = rng.normal(size=(K, 16))[labels] + 0.4 * rng.normal(size=(T, 16))  # (T, 16) piecewise constant + noise
    seg = segment(cosine_similarity(X), 40, name="long_video")
    m = penalised_count(seg)
    assert m == K - 1
    assert seg.change_points(m).tolist() == np.cumsum(lengths)[:-1].tolist()
