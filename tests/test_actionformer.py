"""ActionFormer-style detector: masks, local conv-attention, masked down-sampling, LayerScale, the regression
branch (softplus, health), the EMA loss normaliser, targets, losses, and short training runs."""
import inspect
import json
import math

import pytest
import torch

from tal_pipeline.models.actionformer.attention import local_attention_mask
from tal_pipeline.models.actionformer.blocks import MaskedDepthwiseConv, masked_max_pool
from tal_pipeline.models.actionformer.droppath import drop_path
from tal_pipeline.models.actionformer.heads import RegHead
from tal_pipeline.models.actionformer.losses import diou_loss, sigmoid_focal_loss
from tal_pipeline.models.actionformer.model import ActionFormer
from tal_pipeline.models.actionformer.targets import assign_targets, default_regression_ranges
from tal_pipeline.models.actionformer.transformer import LocalTransformerBlock
from tests.synthetic_features import overfit_recall, synthetic_feature_dataset

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # deterministic, and fair to other tests


def test_local_attention_mask():
    m = local_attention_mask(torch.tensor([[True, True, True, False, False]]), window=3)[0, 0]
    assert m[1].tolist() == [True, True, True, False, False]
    assert m[2].tolist() == [False, True, True, False, False]  # key 3 is padding
    assert m[4].tolist() == [False, False, False, False, True]  # padded query, no real key near: itself (no NaN row)


def test_attention_is_local_and_ignores_padding():
    torch.manual_seed(0)
    block = LocalTransformerBlock(8, heads=2, window=5, layer_scale_init=1.0).eval()
    x = torch.randn(1, 8, 14)
    mask = torch.ones(1, 14, dtype=torch.bool)
    mask[0, 12:] = False
    x[0, :, 12:] = 0.0  # block inputs are zero on padded steps (every block's output is)
    y, m = block(x, mask)
    x2 = x.clone()
    # output i sees inputs i-3 .. i+3: q/k/v convs (+-1) and the window (+-2); step 9 reaches outputs 6 ..
    x2[0, :, 9] += 10.0
    x2[0, :, 12:] = 99.0  # padding content must not matter
    y2, _ = block(x2, mask)
    assert torch.equal(m, mask)
    assert torch.allclose(y[0, :, :6], y2[0, :, :6], atol=1e-6)
    assert not torch.allclose(y[0, :, 6:12], y2[0, :, 6:12])
    assert torch.all(y2[0, :, 12:] == 0)


def test_masked_max_pool_and_strided_conv_ignore_padding():
    x = torch.tensor([[[-3.0, -2.0, -5.0, -1.0, 7.0, 7.0]]])  # (1, 1, 6), steps 4, 5 padded
    mask = torch.tensor([[True, True, True, True, False, False]])
    y, m = masked_max_pool(x, mask)
    assert m.tolist() == [[True, True, False]]
    # windows {0, 1}, {1, 2, 3}: the padded 7s (or zeros) never win; location 2 (step 4) is padding -> 0
    assert y.flatten().tolist() == [-2.0, -1.0, 0.0]
    conv = MaskedDepthwiseConv(1, stride=2, filters=3)
    z, mz = conv(x, mask)
    assert z.shape == (1, 3, 3) and torch.equal(mz, m)
    x2 = x.clone()
    x2[..., 4:] = -50.0
    assert torch.equal(conv(x2, mask)[0], z) and torch.all(z[..., 2] == 0)


def _pad_with_garbage(x, mask, extra, scale=50.0):
    xp = torch.cat([x, torch.randn(x.shape[0], x.shape[1], extra) * scale], dim=2)
    mp = torch.cat([mask, torch.zeros(mask.shape[0], extra, dtype=torch.bool)], dim=1)
    return xp, mp


def test_padded_tail_never_changes_real_outputs_at_any_level():
    torch.manual_seed(0)
    # layer_scale_init 1: the blocks act fully from the start, a leak could not hide behind 1e-4
    model = ActionFormer(6, 2, width=16, levels=4, heads=2, window=5, layer_scale_init=1.0).eval()
    x = torch.randn(2, 6, 21)
    mask = torch.ones(2, 21, dtype=torch.bool)
    mask[1, 13:] = False  # a real length that no stride divides
    x[1, :, 13:] = 7.0  # garbage under the mask of video 1
    xp, mp = _pad_with_garbage(x, mask, 11)
    with torch.no_grad():
        ref_feats, ref_masks = model.backbone(torch.nn.functional.pad(x, (0, 3)),
                                              torch.nn.functional.pad(mask, (0, 3)))  # T = 24
        feats, masks = model.backbone(xp[..., :24], mp[:, :24])  # other content past the real steps
        for level, (a, b, ma, mb) in enumerate(zip(ref_feats, feats, ref_masks, masks)):
            assert torch.equal(ma, mb) and a.shape == (2, 16, 24 // 2 ** level)
            assert torch.allclose(a * ma[:, None], b * mb[:, None], atol=1e-5), level
            assert torch.all(b[~mb[:, None].expand_as(b)] == 0)  # padded locations are zero
        x_clean = x.clone()
        x_clean[1, :, 13:] = 0.0
        a, b = model(x_clean, mask), model(xp, mp)  # 21 -> 24 steps vs 32 -> 32 steps
    for i in range(2):
        va, vb = a["valid"][i], b["valid"][i]
        assert torch.equal(a["positions"][va], b["positions"][vb])
        assert torch.allclose(a["logits"][i][va], b["logits"][i][vb], atol=1e-5)
        assert torch.allclose(a["dists"][i][va], b["dists"][i][vb], atol=1e-5)
    assert int(a["valid"][1].sum()) == 13 + 7 + 4 + 2  # ceil(13 / 2^l): location i real when step i * 2^l is


def test_shapes_all_levels():
    model = ActionFormer(10, 3, width=16, levels=5, heads=4, window=5)
    x, mask = torch.randn(2, 10, 100), torch.ones(2, 100, dtype=torch.bool)
    mask[1, 37:] = False
    feats, masks = model.backbone(torch.nn.functional.pad(x, (0, 12)), torch.nn.functional.pad(mask, (0, 12)))
    assert [tuple(f.shape) for f in feats] == [(2, 16, 112 // 2 ** i) for i in range(5)]
    assert [tuple(m.shape) for m in masks] == [(2, 112 // 2 ** i) for i in range(5)]
    out = model(x, mask)
    k = sum(112 // 2 ** i for i in range(5))
    assert out["logits"].shape == (2, k, 3) and out["dists"].shape == (2, k, 2) and out["valid"].shape == (2, k)
    assert out["positions"].shape == out["strides"].shape == (k,) and out["ranges"].shape == (k, 2)
    assert out["positions"][112:112 + 56].tolist() == [2.0 * i for i in range(56)]  # level 1: stride 2
    assert [int(out["valid"][b].sum()) for b in range(2)] == [sum(math.ceil(n / 2 ** i) for i in range(5))
                                                             for n in (100, 37)]
    assert torch.all(out["dists"] > 0)


def test_layer_scale_blocks_start_near_identity():
    torch.manual_seed(0)
    # the published init (the default, 1.0, suits the short CPU schedule: see ActionFormer's docstring)
    model = ActionFormer(8, 2, width=32, levels=3, heads=4, window=5, layer_scale_init=1e-4).eval()
    x = torch.randn(2, 32, 16)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[1, 10:] = False
    x = x * mask[:, None]
    for block in list(model.backbone.stem) + list(model.backbone.branch):
        y, m = block(x, mask)
        skip = x if block.stride == 1 else masked_max_pool(x, mask)[0]
        assert (y - skip).abs().max() < 1e-2 * skip.abs().max()
        assert torch.allclose(block.path_attn.scale, torch.full((32,), 1e-4))


def test_drop_path():
    x = torch.ones(1000, 2, 3)
    assert torch.equal(drop_path(x, 0.5, training=False), x)
    y = drop_path(x, 0.5, training=True)
    per_sample = y[:, 0, 0]
    assert set(per_sample.unique().tolist()) == {0.0, 2.0} and 0.4 < (per_sample == 0).float().mean() < 0.6
    assert torch.all(y == per_sample[:, None, None])  # whole sample dropped or kept


def test_regression_keeps_gradient_where_raw_output_is_very_negative():
    head = RegHead(8, levels=1)
    with torch.no_grad():
        head.out.weight.zero_()
        head.out.bias.fill_(-30.0)  # raw output -30 everywhere: a ReLU would be dead here
    f, mask = torch.randn(1, 8, 6), torch.ones(1, 6, dtype=torch.bool)
    d = head(f, mask, 0)
    assert torch.all(d > 0) and torch.all(d < 1e-12)
    d.sum().backward()
    assert torch.all(head.out.bias.grad > 0) and head.scales[0].grad != 0


def _tiny_batch():
    torch.manual_seed(0)
    x, mask = torch.randn(2, 6, 32), torch.ones(2, 32, dtype=torch.bool)
    targets = [{"segments": torch.tensor([[4.0, 10.0], [14.0, 28.0]]), "labels": torch.tensor([0, 1])},
               {"segments": torch.tensor([[2.0, 9.0]]), "labels": torch.tensor([1])}]
    return x, mask, targets


def test_ema_loss_normaliser_not_in_state_dict_and_updates_in_training_only():
    model = ActionFormer(6, 2, width=16, levels=3, heads=2, window=5)
    x, mask, targets = _tiny_batch()
    assert model.loss_normalizer == 100.0
    assert not any("normal" in k for k in model.state_dict())
    fresh = ActionFormer(6, 2, width=16, levels=3, heads=2, window=5)
    fresh.load_state_dict(model.state_dict(), strict=True)
    n_pos = sum(int(fg.sum()) for _, _, fg in model._assign(model(x, mask), targets))
    assert n_pos > 0
    model.train()
    losses = model.loss(model(x, mask), targets)
    assert model.loss_normalizer == pytest.approx(0.9 * 100.0 + 0.1 * n_pos)
    assert losses["reg"].item() == pytest.approx(losses["reg_mean"].item() * n_pos / model.loss_normalizer, rel=1e-5)
    before = model.loss_normalizer
    model.eval()
    model.loss(model(x, mask), targets)
    assert model.loss_normalizer == before
    model.train()
    model.loss(model(x, mask), [{"segments": torch.zeros(0, 2), "labels": torch.zeros(0, dtype=torch.long)}] * 2)
    assert model.loss_normalizer == pytest.approx(0.9 * before + 0.1)  # no positive counts as 1


def test_regression_health_hand_made():
    model = ActionFormer(6, 2, width=16, levels=2, heads=2, window=5)
    k = 8  # one level by hand: locations 0..7, stride 1, every range allowed
    outputs = {"positions": torch.arange(8.0), "strides": torch.ones(k),
               "ranges": torch.tensor([[0.0, math.inf]]).expand(k, 2),
               "valid": torch.ones(2, k, dtype=torch.bool), "dists": torch.zeros(2, k, 2)}
    outputs["valid"][0, 5] = False
    # [2, 6]: centre 4, radius 1.5 -> foreground 3, 4, 5; 5 is padding -> 3 and 4 count
    targets = [{"segments": torch.tensor([[2.0, 6.0]]), "labels": torch.tensor([0])},
               {"segments": torch.zeros(0, 2), "labels": torch.zeros(0, dtype=torch.long)}]
    outputs["dists"][0, 3] = torch.tensor([1.0, 2.0])  # alive
    outputs["dists"][0, 4] = torch.tensor([5e-4, 1.0])  # start distance dead
    assert model.regression_health(outputs, targets) == {"fg_locations": 2, "positive_share": 0.5}
    outputs["dists"][0, 4, 0] = 0.5
    assert model.regression_health(outputs, targets)["positive_share"] == 1.0
    empty = model.regression_health(outputs, targets[1:] * 2)
    assert empty["fg_locations"] == 0 and math.isnan(empty["positive_share"])


def test_constructor_options_are_json_and_rebuild_the_model():
    params = inspect.signature(ActionFormer.__init__).parameters
    options = {k: p.default for k, p in params.items() if k not in ("self", "in_channels", "num_classes")}
    assert all(v is not inspect.Parameter.empty for v in options.values())
    options = json.loads(json.dumps(options, allow_nan=False))
    options.update(width=16, levels=3, heads=2, regression_ranges=[[0, 4], [4, 8], [8, None]])
    a, b = ActionFormer(6, 2, **options), ActionFormer(6, 2, **options)
    b.load_state_dict(a.state_dict(), strict=True)
    assert a.regression_ranges[-1] == (8.0, math.inf)


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


def test_overfit_tiny_synthetic():
    before, after = overfit_recall(lambda: ActionFormer(16, 2, width=32, levels=4, heads=4, window=9), lr=2e-3)
    assert after >= 0.7 and after > before + 0.3, (before, after)


def test_train_detector_lowers_regression_loss_and_stays_healthy():
    from tal_pipeline.stages.detectors.training import train_detector

    feats, ann, labels, grid, _ = synthetic_feature_dataset(num_videos=6, channels=32, num_classes=2, seed=2,
                                                            min_len=48, max_len=72)
    config = {"epochs": 20, "lr": 1e-3, "warmup_epochs": 1, "model": {"width": 32}}  # 2 iterations per epoch
    _, cfg, log = train_detector("actionformer", feats, ann, labels, grid, config=config, seed=0, device="cpu",
                                 progress=False)
    assert len(log) == 40
    first = sum(r["reg_mean"] for r in log[:4]) / 4  # DIoU per positive: the normaliser does not move it
    last = sum(r["reg_mean"] for r in log[-4:]) / 4
    assert last < 0.7 * first, (first, last)  # 0.39-0.47 x first over seeds 0-3
    assert cfg["health"]["positive_share"] >= 0.9 and not cfg["health"]["problems"], cfg["health"]
