"""Soft-NMS against a naive reference, including the last-candidate case the AFSD loop drops."""
import math

import numpy as np
import pytest
import torch

from tal_pipeline.models.nms import batched_soft_nms, select_detections, soft_nms
from tests.reference_nms import naive_soft_nms


def test_two_overlapping_hand_decay():
    segs = torch.tensor([[0.0, 4.0], [2.0, 6.0]])  # tIoU 2/6
    keep, sc = soft_nms(segs, torch.tensor([0.9, 0.8]), sigma=0.5)
    assert keep.tolist() == [0, 1]
    assert sc[1].item() == pytest.approx(0.8 * math.exp(-(1 / 3) ** 2 / 0.5))


@pytest.mark.parametrize("n", [1, 2, 7, 60])
def test_matches_naive_and_keeps_last_candidate(n):
    rng = np.random.default_rng(n)
    start = rng.uniform(0, 30, n)
    segs = np.stack([start, start + rng.uniform(0.5, 8, n)], 1)
    scores = rng.uniform(0.01, 1, n)
    keep, sc = soft_nms(torch.tensor(segs), torch.tensor(scores))
    ref = naive_soft_nms(segs.tolist(), scores.tolist())
    assert keep.tolist() == [i for i, _ in ref]
    assert np.allclose(sc.numpy(), [s for _, s in ref])
    if n == 1:
        assert keep.tolist() == [0]  # the single (= last) candidate survives


def test_last_remaining_candidate_is_kept():
    # Disjoint segments: nothing decays, every candidate, the last picked included, must come back.
    segs = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    keep, sc = soft_nms(segs, torch.tensor([0.5, 0.9, 0.7]))
    assert keep.tolist() == [1, 2, 0]
    assert torch.allclose(sc, torch.tensor([0.9, 0.7, 0.5]))


def test_min_score_and_max_keep():
    segs = torch.tensor([[0.0, 4.0], [0.0, 4.0], [10.0, 12.0]])
    # identical second segment decays by exp(-1/0.5) = 0.135 -> 0.1 * 0.135 < 0.05: dropped
    keep, _ = soft_nms(segs, torch.tensor([0.9, 0.1, 0.3]), min_score=0.05)
    assert keep.tolist() == [0, 2]
    keep, _ = soft_nms(segs, torch.tensor([0.9, 0.1, 0.3]), max_keep=1)
    assert keep.tolist() == [0]


def test_batched_classes_do_not_suppress_each_other():
    segs = torch.tensor([[0.0, 4.0], [0.0, 4.0], [0.5, 4.0]])
    scores = torch.tensor([0.9, 0.6, 0.8])
    labels = torch.tensor([0, 1, 0])
    s, sc, lab = batched_soft_nms(segs, scores, labels)
    got = {(tuple(x.tolist()), int(c)): float(v) for x, c, v in zip(s, lab, sc)}
    assert got[((0.0, 4.0), 1)] == pytest.approx(0.6)  # same span, other class: untouched (multi-label)
    assert got[((0.5, 4.0), 0)] == pytest.approx(0.8 * math.exp(-(3.5 / 4) ** 2 / 0.5))
    assert sc.tolist() == sorted(sc.tolist(), reverse=True)


def test_select_detections_is_multilabel_and_capped():
    segs = torch.tensor([[0.0, 2.0], [5.0, 9.0], [3.0, 2.0]])  # last one is degenerate (end < start)
    scores = torch.tensor([[0.9, 0.7], [0.0005, 0.3], [0.99, 0.99]])
    valid = torch.tensor([True, True, True])
    s, sc, lab = select_detections(segs, scores, valid, thresh=1e-3, topk=100, sigma=0.5, cap=10)
    assert sorted(zip(lab.tolist(), s[:, 0].tolist())) == [(0, 0.0), (1, 0.0), (1, 5.0)]
    s, sc, lab = select_detections(segs, scores, valid, thresh=1e-3, topk=100, sigma=0.5, cap=2)
    assert sc.tolist() == pytest.approx([0.9, 0.7])
