"""The one tIoU (models/segments.py) on hand-checked values, for numpy and torch alike, in the degenerate cases
its callers rely on (zero-length and reversed segments, the union floor) and with finite gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tal_pipeline.models.segments import EXACT, intersection, pairwise_tiou, tiou


def test_pairwise_hand_values_numpy_and_torch():
    a = np.array([[0.0, 2.0], [0.0, 1.0], [0.0, 10.0]])
    b = np.array([[1.0, 3.0], [5.0, 6.0], [0.0, 5.0], [5.0, 15.0]])
    expect = [[1 / 3, 0.0, 2 / 5, 0.0], [0.0, 0.0, 1 / 5, 0.0], [2 / 10, 1 / 10, 1 / 2, 5 / 15]]
    got = pairwise_tiou(a, b)
    assert isinstance(got, np.ndarray) and got.shape == (3, 4) and got.dtype == np.float64
    np.testing.assert_allclose(got, expect, rtol=1e-15)
    t = pairwise_tiou(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32), min_union=1e-8)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), expect, rtol=1e-6)


def test_elementwise_broadcasts_and_is_symmetric():
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 10, size=(2, 50))
    e = s + rng.exponential(2.0, size=(2, 50))
    forward, backward = tiou(s[0], e[0], s[1], e[1]), tiou(s[1], e[1], s[0], e[0])
    np.testing.assert_array_equal(forward, backward)  # min, max and + commute exactly
    np.testing.assert_array_equal(pairwise_tiou(np.stack([s[0], e[0]], 1), np.stack([s[1], e[1]], 1)).diagonal(),
                                  forward)
    assert np.all((forward >= 0) & (forward <= 1))
    np.testing.assert_array_equal(tiou(s[0], e[0], s[0], e[0]), np.ones(50))


def test_degenerate_segments():
    # two zero-length segments (union 0): tIoU 0, not NaN; touching segments: 0; a point inside a segment: 0
    zero = tiou(np.array([3.0, 3.0, 2.0]), np.array([3.0, 3.0, 2.0]), np.array([3.0, 0.0, 0.0]),
                np.array([3.0, 3.0, 5.0]))
    np.testing.assert_array_equal(zero, [0.0, 0.0, 0.0])
    # a reversed segment (end < start) has no intersection with anything, so tIoU 0 whatever the floor
    assert intersection(5.0, 3.0, np.float64(0.0), np.float64(10.0)) == 0.0
    np.testing.assert_array_equal(tiou(np.array([5.0]), np.array([3.0]), np.array([0.0]), np.array([10.0])), [0.0])
    # the default floor leaves every positive float64 union as it is, however small
    tiny = 1e-300
    assert tiou(np.array([0.0]), np.array([tiny]), np.array([0.0]), np.array([tiny]))[0] == 1.0
    assert EXACT > 0 and EXACT / 2 == 0.0
    # a floor above the union divides by the floor instead (torch callers: bounded values and gradients)
    np.testing.assert_allclose(tiou(np.array([0.0]), np.array([1e-9]), np.array([0.0]), np.array([1e-9]),
                                    min_union=1e-8), [0.1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_gradients_are_finite_for_zero_length_segments(dtype):
    pred = torch.tensor([[2.0, 2.0], [0.0, 4.0], [1.0, 3.0]], dtype=dtype, requires_grad=True)
    gt = torch.tensor([[2.0, 2.0], [2.0, 6.0], [1.0, 3.0]], dtype=dtype)
    iou = tiou(pred[:, 0], pred[:, 1], gt[:, 0], gt[:, 1], min_union=1e-8)
    np.testing.assert_allclose(iou.detach().numpy(), [0.0, 2 / 6, 1.0], rtol=1e-6)
    iou.sum().backward()
    assert torch.isfinite(pred.grad).all()
    # [0, 4] against [2, 6]: moving the end inside the gt grows the intersection and leaves the union (6) as it is
    assert pred.grad[1, 1].item() == pytest.approx(1 / 6)
