"""ActionFormer-style detector: masks, local attention, targets, losses, and a tiny overfit."""
import math

import pytest
import torch

from models.actionformer.blocks import LocalTransformerBlock, local_attention_mask
from models.actionformer.losses import diou_loss, sigmoid_focal_loss
from models.actionformer.model import ActionFormer
from models.actionformer.targets import assign_targets, default_regression_ranges


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # deterministic, and fair to other tests


def test_local_attention_mask():
    m = local_attention_mask(torch.tensor([[True, True, True, False, False]]), window=3)[0, 0]
    assert m[1].tolist() == [True, True, True, False, False]
    assert m[2].tolist() == [False, True, True, False, False]  # key 3 is padding
    assert m[4].tolist() == [False, False, False, False, True]  # padded query, no real key near: itself (no NaN row)


def test_attention_is_local_and_ignores_padding():
    torch.manual_seed(0)
    block = LocalTransformerBlock(8, heads=2, window=5).eval()
    x = torch.randn(1, 8, 12)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 10:] = False
    y = block(x, mask)
    x2 = x.clone()
    x2[0, :, 9] += 10.0  # step 9 is outside the window (+-2) of steps 0..6
    x2[0, :, 10:] = 99.0  # padding content must not matter
    y2 = block(x2, mask)
    assert torch.allclose(y[0, :, :7], y2[0, :, :7], atol=1e-6)
    assert not torch.allclose(y[0, :, 7:10], y2[0, :, 7:10])
    assert torch.all(y2[0, :, 10:] == 0)


def test_padding_does_not_change_real_outputs():
    torch.manual_seed(0)
    model = ActionFormer(6, 2, width=16, levels=3, heads=2, window=5).eval()
    x = torch.randn(1, 6, 16)
    mask = torch.ones(1, 16, dtype=torch.bool)
    a = model(x, mask)
    xp = torch.cat([x, torch.randn(1, 6, 8) * 50], dim=2)
    mp = torch.cat([mask, torch.zeros(1, 8, dtype=torch.bool)], dim=1)
    b = model(xp, mp)
    va = a["valid"][0]
    pos_a, pos_b = a["positions"][va], b["positions"][b["valid"][0]]
    assert torch.equal(pos_a, pos_b)
    assert torch.allclose(a["logits"][0][va], b["logits"][0][b["valid"][0]], atol=1e-5)


def test_regression_ranges_default():
    assert default_regression_ranges(4) == [(0.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, math.inf)]


def test_centre_sampling_and_regression_ranges():
    # Level 0 (stride 1, range [0, 4]) and level 1 (stride 2, range [5, inf)), locations 0..11 and 0,2,..,10.
    pos = torch.cat([torch.arange(12.0), torch.arange(0.0, 12.0, 2.0)])
    strides = torch.cat([torch.ones(12), torch.full((6,), 2.0)])
    ranges = torch.cat([torch.tensor([[0.0, 4.0]]).expand(12, 2), torch.tensor([[5.0, math.inf]]).expand(6, 2)])
    gt = torch.tensor([[2.0, 6.0], [0.0, 12.0]])  # short (max dist <= 4) and long action
    cls_t, reg_t, fg = assign_targets(pos, strides, ranges, gt, torch.tensor([1, 0]), 2, center_radius=1.5)
    # short action: centre 4, radius 1.5 at stride 1 -> locations 3, 4, 5 on level 0 (max dist 3, 2, 3 <= 4)
    lvl0 = fg[:12].nonzero().flatten().tolist()
    assert lvl0 == [3, 4, 5]
    assert cls_t[4].tolist() == [0.0, 1.0] and reg_t[4].tolist() == [2.0, 2.0]
    # long action: centre 6, radius 3 at stride 2 -> 4, 6, 8 on level 1 (max dist 8, 6, 8 in [5, inf));
    # the short action's centre region on level 1 has max dist <= 4: out of range there
    lvl1 = (pos[12:][fg[12:]]).tolist()
    assert lvl1 == [4.0, 6.0, 8.0]
    assert reg_t[12 + 2].tolist() == [2.0, 4.0]  # (4 - 0, 12 - 4) / stride 2
    assert cls_t[12 + 3].tolist() == [1.0, 0.0]


def test_multilabel_same_span():
    pos = torch.tensor([5.0])
    cls_t, _, fg = assign_targets(pos, torch.ones(1), torch.tensor([[0.0, 100.0]]),
                                  torch.tensor([[3.0, 7.0], [3.0, 7.0]]), torch.tensor([0, 2]), 3)
    assert fg.tolist() == [True] and cls_t[0].tolist() == [1.0, 0.0, 1.0]


def test_sigmoid_focal_hand():
    # logit 0: p = 0.5, BCE = log 2, (1 - p_t)^2 = 0.25, alpha_t = 0.25 (positive) / 0.75 (negative)
    got = sigmoid_focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]))
    assert got.item() == pytest.approx((0.25 + 0.75) * 0.25 * math.log(2))


def test_diou_hand():
    same = torch.tensor([[1.0, 1.0]])
    assert diou_loss(same, same).item() == pytest.approx(0.0)
    assert diou_loss(same, torch.tensor([[2.0, 2.0]])).item() == pytest.approx(0.5)  # IoU 0.5, same centre
    # [0, 2] vs [-2, 0]: IoU 0, centres 1 and -1, enclosing length 4 -> 1 + (2/4)^2
    assert diou_loss(torch.tensor([[0.0, 2.0]]), torch.tensor([[2.0, 0.0]])).item() == pytest.approx(1.25)


def recall_at(dets, gts, thr=0.5, top=5):
    hit = total = 0
    for (d_seg, _, d_lab), (segs, labs) in zip(dets, gts):
        for (s, e), c in zip(segs.tolist(), labs.tolist()):
            total += 1
            cand = d_seg[d_lab == c][:top]
            if len(cand):
                inter = (torch.minimum(cand[:, 1], torch.tensor(e)) - torch.maximum(cand[:, 0], torch.tensor(s))).clamp(min=0)
                hit += bool((inter / ((cand[:, 1] - cand[:, 0]) + (e - s) - inter) >= thr).any())
    return hit / total


def test_overfit_tiny_synthetic():
    from stages.detection import build_training_set, collate, synthetic_feature_dataset

    torch.manual_seed(0)
    feats, ann, labels, grid, _ = synthetic_feature_dataset(6, channels=16, num_classes=2, seed=1, min_len=48,
                                                            max_len=64)
    items = build_training_set(feats, ann, labels, grid)
    x, mask, targets = collate([(it.features, it.segments, it.labels) for it in items], "cpu")
    gts = [(t["segments"], t["labels"]) for t in targets]
    model = ActionFormer(16, 2, width=32, levels=4, heads=4, window=9)
    model.eval()
    before = recall_at(model.predict(model(x, mask)), gts)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(60):
        loss = model.loss(model(x, mask), targets)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    after = recall_at(model.predict(model(x, mask)), gts)
    assert after >= 0.7 and after > before + 0.3, (before, after)
