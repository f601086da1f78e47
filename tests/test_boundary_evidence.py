"""Boundary evidence curves from S (stages/bapg/boundary_evidence.py): novelty and change-point strength."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from tal_pipeline.stages.bapg.boundary_evidence import (
    change_point_strength,
    novelty_curves,
    strength_curve,
    strength_curves,
)
from tal_pipeline.stages.bapg.tsc import change_points
from tests.reference_similarity import cosine_similarity_matrix as cosine_similarity
from tests.reference_tsc import segmentation_cost


def block_matrix(lengths, across=0.0) -> np.ndarray:
    """(T, T) S: 1 inside each block of `lengths`, `across` between blocks."""
    labels = np.repeat(np.arange(len(lengths)), lengths)  # (T,)
    return np.where(labels[:, None] == labels[None, :], 1.0, across)


def naive_novelty(S: np.ndarray, k: int) -> np.ndarray:
    """The module's formula, one t at a time, with explicit slices: (T,) float64."""
    S = (np.asarray(S, dtype=np.float64) + np.asarray(S, dtype=np.float64).T) / 2
    T = S.shape[0]
    out = np.zeros(T)
    for t in range(1, T):
        past, nxt = slice(max(0, t - k), t), slice(t, min(T, t + k))
        out[t] = S[past, past].mean() + S[nxt, nxt].mean() - 2 * S[past, nxt].mean()
    return out


def as_zarr(S: np.ndarray, chunk: int):
    z = zarr.create_array(store=zarr.storage.MemoryStore(), shape=S.shape, chunks=(chunk, chunk), dtype=S.dtype)
    z[...] = S
    return z


def test_novelty_peaks_exactly_at_block_boundaries():
    lengths = [12, 9, 15, 10]
    S = block_matrix(lengths, across=0.2).astype(np.float16)  # (46, 46)
    bounds = np.cumsum(lengths)[:-1]  # [12, 21, 36]
    curves = novelty_curves(S, widths=(2, 4, 8))  # (46, 3)
    assert curves.shape == (46, 3) and curves.dtype == np.float32
    far = np.ones(46, dtype=bool)
    for w, k in enumerate((2, 4, 8)):
        c = curves[:, w]
        top = 2 * (1 - np.float64(np.float16(0.2)))  # 1 + 1 - 2 * across at a boundary
        assert np.flatnonzero(np.isclose(c, top, atol=1e-6)).tolist() == bounds.tolist()
        assert np.all(c[np.setdiff1d(np.arange(46), bounds)] < top - 0.05)
        far[:] = np.min(np.abs(np.arange(46)[:, None] - bounds[None, :]), axis=1) >= k
        assert np.allclose(c[far], 0.0, atol=1e-6)  # both windows inside one block: no novelty
    # with noise on top, each boundary is still the highest point within +-k of itself
    rng = np.random.default_rng(1)
    noise = rng.normal(scale=0.05, size=S.shape)
    noisy = (block_matrix(lengths, 0.2) + (noise + noise.T) / 2).astype(np.float16)
    c = novelty_curves(noisy, widths=(4,))[:, 0]
    for b in bounds:
        assert int(np.argmax(c[b - 4:b + 5])) + b - 4 == b


@pytest.mark.parametrize("block_rows", [1, 4, 100])
def test_novelty_equals_naive_loop(block_rows):
    rng = np.random.default_rng(2)
    S = rng.uniform(-1, 1, size=(37, 37)).astype(np.float16)  # asymmetric on purpose
    curves = novelty_curves(S, widths=(1, 3, 5, 40), block_rows=block_rows)
    for w, k in enumerate((1, 3, 5, 40)):  # 40 > T: every window truncated at both ends
        np.testing.assert_allclose(curves[:, w], naive_novelty(S, k), rtol=1e-5, atol=1e-5)
    assert curves[0].tolist() == [0.0] * 4


def test_novelty_reads_zarr_tiles_and_tiny_inputs():
    rng = np.random.default_rng(3)
    S = cosine_similarity(rng.normal(size=(50, 4))).astype(np.float16)  # (50, 50)
    np.testing.assert_array_equal(novelty_curves(as_zarr(S, 8), widths=(2, 6), block_rows=7),
                                  novelty_curves(S, widths=(2, 6), block_rows=7))
    assert novelty_curves(np.ones((1, 1)), widths=(2,)).tolist() == [[0.0]]
    with pytest.raises(ValueError, match="non-finite"):
        novelty_curves(np.full((5, 5), np.nan), widths=(2,))
    with pytest.raises(ValueError, match="square"):
        novelty_curves(np.ones((4, 5)))


def test_true_change_point_is_much_stronger_than_a_spurious_one():
    S = block_matrix([20, 20], across=0.1)  # (40, 40): one true boundary at 20
    rise = change_point_strength(S, [10, 20])
    # spurious 10 splits a constant block: no rise; true 20 merges [10, 20) and [20, 40):
    # (n_L n_R / (n_L + n_R)) (1 + 1 - 2 * 0.1) = (200 / 30) * 1.8 = 12
    np.testing.assert_allclose(rise, [0.0, 12.0], atol=1e-12)
    np.testing.assert_allclose(change_point_strength(S, [10, 20], normalise=True), [0.0, 1.8], atol=1e-12)
    # the same with noise and the change points TSC finds for m = 2 (one of them necessarily spurious)
    rng = np.random.default_rng(4)
    x = np.repeat(rng.normal(size=(2, 8)), 20, axis=0) + rng.normal(scale=0.3, size=(40, 8))  # (40, 8)
    S = cosine_similarity(x).astype(np.float16)
    cps = change_points(S, ms=[2])[2]
    assert 20 in cps.tolist()
    rise = change_point_strength(S, cps)
    true = cps.tolist().index(20)
    assert rise[true] > 10 * np.delete(rise, true).max()


@pytest.mark.parametrize("block_rows", [1, 3, 64])
def test_strength_equals_naive_cost_difference(block_rows):
    rng = np.random.default_rng(5)
    for S in (cosine_similarity(rng.normal(size=(30, 3))), rng.uniform(-1, 1, size=(30, 30)).astype(np.float16)):
        cps = np.array([1, 2, 7, 8, 9, 15, 29])  # length-1 segments too: a row block spans many segments
        rise = change_point_strength(S, cps, block_rows=block_rows)
        S64 = np.asarray(S, dtype=np.float64)
        full = segmentation_cost(S64, cps)
        naive = [segmentation_cost(S64, np.delete(cps, i)) - full for i in range(len(cps))]
        np.testing.assert_allclose(rise, naive, rtol=1e-9, atol=1e-9)
        bounds = [0, *cps.tolist(), 30]
        sym = (S64 + S64.T) / 2
        mmd = [sym[a:b, a:b].mean() + sym[b:c, b:c].mean() - 2 * sym[a:b, b:c].mean()
               for a, b, c in zip(bounds[:-2], bounds[1:-1], bounds[2:])]
        np.testing.assert_allclose(change_point_strength(S, cps, normalise=True, block_rows=block_rows), mmd,
                                   rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(change_point_strength(as_zarr(S, 8), cps, block_rows=block_rows), rise)


def test_strength_curves():
    S = block_matrix([20, 20], across=0.1)
    curve = strength_curve([10, 20], [0.5, 12.0], 40)
    assert curve.dtype == np.float32 and curve.shape == (40,)
    assert np.flatnonzero(curve).tolist() == [10, 20] and curve[20] == 12.0
    curves = strength_curves(S, [np.array([20]), np.array([10, 20]), np.array([], dtype=np.int64)])
    assert curves.shape == (40, 3) and curves.dtype == np.float32
    np.testing.assert_allclose(curves[20], [1.8, 1.8, 0.0], rtol=1e-6)  # normalised by default
    assert np.count_nonzero(curves) == 2
    assert change_point_strength(S, []).shape == (0,)
    with pytest.raises(ValueError, match="ascending"):
        change_point_strength(S, [20, 10])
    with pytest.raises(ValueError, match="ascending"):
        change_point_strength(S, [0, 10])
    with pytest.raises(ValueError, match="strengths"):
        strength_curve([10], [1.0, 2.0], 40)
