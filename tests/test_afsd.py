"""AFSD on features: every equation on a hand-checkable input, plus a tiny end-to-end overfit."""
import math

import pytest
import torch

from tal_pipeline.models.afsd import boundary_pooling, heads
from tal_pipeline.models.afsd import losses as afsd_losses
from tal_pipeline.models.afsd import model as afsd_model
from tal_pipeline.models.afsd.bcl import build_contrastive_clips
from tal_pipeline.models.afsd.boundary_pooling import boundary_max_pool, boundary_regions, region_to_indices
from tal_pipeline.models.afsd.heads import decode_coarse
from tal_pipeline.models.afsd.model import AFSD, fuse_scores, refine_segments
from tal_pipeline.models.afsd.targets import coarse_targets, offset_targets, refined_targets
from tests import reference_boundary_pooling as reference
from tests.synthetic_features import overfit_recall

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # deterministic, and fair to other tests


def test_eq1_decode():
    dist = torch.tensor([[[1.0, 0.5, 2.0], [3.0, 1.0, 0.0]]])  # (B=1, 2, T_l=3): d^s, d^e
    start, end = decode_coarse(dist, stride=4)  # locations at 0, 4, 8
    assert start.tolist() == [[-1.0, 3.5, 6.0]]
    assert end.tolist() == [[3.0, 5.0, 8.0]]


def test_eq3_regions():
    t_s, t_e = boundary_regions(torch.tensor([10.0]), torch.tensor([30.0]), delta_a=4, delta_b=10)
    assert t_s.tolist() == [[5.0, 12.0]]  # [psi - w/4, psi + w/10], w = 20
    assert t_e.tolist() == [[28.0, 35.0]]


def naive_pool(feat, regions, lengths):
    b, c, t = feat.shape
    out = torch.zeros(b, c, regions.shape[1])
    for i in range(b):
        last = max(int(lengths[i]) - 1, 0)
        for k in range(regions.shape[1]):
            lo = min(max(math.floor(regions[i, k, 0].item()), 0), last)
            hi = max(min(max(math.ceil(regions[i, k, 1].item()), 0), last), lo)
            out[i, :, k] = feat[i, :, lo:hi + 1].max(dim=1).values
    return out


def test_eq4_boundary_max_pool_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(3, 5, 37, generator=g)
    a = torch.rand(3, 50, generator=g) * 50 - 8  # some regions start before 0 or after the end
    regions = torch.stack([a, a + torch.rand(3, 50, generator=g) * 20], -1)
    regions[0, 0] = torch.tensor([40.0, 45.0])  # wholly after the valid steps
    regions[1, 0] = torch.tensor([-9.0, -3.0])  # wholly before
    lengths = torch.tensor([37, 20, 1])
    assert torch.equal(boundary_max_pool(feat, regions, lengths), naive_pool(feat, regions, lengths))


def test_eq4_hand_example_and_gradient_to_salient_moment():
    feat = torch.tensor([[[0.0, 5.0, 1.0, 2.0, 9.0, 3.0]]], requires_grad=True)  # (1, 1, 6)
    regions = torch.tensor([[[0.2, 2.5], [2.0, 3.0], [3.5, 10.0]]])  # steps 0..3, 2..3, 3..5
    out = boundary_max_pool(feat, regions, torch.tensor([6]))
    assert out.tolist() == [[[5.0, 2.0, 9.0]]]
    out.sum().backward()
    assert feat.grad.tolist() == [[[0.0, 1.0, 0.0, 1.0, 1.0, 0.0]]]


def distinct_features(shape, generator, dtype=torch.float32):
    """Features with no two equal values (a shuffled ramp of integers, exact in dtype): no ties anywhere."""
    n = math.prod(shape)
    return (torch.randperm(n, generator=generator).to(torch.float64) - n / 2).reshape(shape).to(dtype)


def random_regions(b, k, t, max_width, generator):
    """(B, K, 2) regions: some start before 0 or end past T, widths 0..max_width (length-1 regions included)."""
    a = torch.rand(b, k, generator=generator) * t * 1.2 - 0.1 * t
    return torch.stack([a, a + torch.rand(b, k, generator=generator) * max_width], -1)


def first_argmax_grad(feat, regions, lengths, grad_out):
    """The gradient the new pooling promises: each output's gradient on the first step reaching its max (loops)."""
    lo, hi = region_to_indices(regions, lengths)
    g = torch.zeros_like(feat)
    for i in range(feat.shape[0]):
        for k in range(regions.shape[1]):
            seg = feat[i, :, lo[i, k]:hi[i, k] + 1]  # (C, n)
            first = (seg == seg.max(dim=1, keepdim=True).values).to(torch.int8).argmax(dim=1)  # (C,) first max
            g[i, torch.arange(feat.shape[1]), lo[i, k] + first] += grad_out[i, :, k]
    return g


def test_eq4_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    feat = (distinct_features((2, 3, 17), g, torch.float64) * 0.1).requires_grad_()  # steps 0.1 apart >> eps
    regions = random_regions(2, 12, 17, 9, g)
    regions[0, :2] = torch.tensor([[3.0, 3.0], [-5.0, -2.0]])  # one step; wholly before the start
    lengths = torch.tensor([17, 6])
    assert torch.autograd.gradcheck(lambda f: boundary_max_pool(f, regions, lengths), (feat,))
    assert torch.autograd.gradgradcheck(lambda f: boundary_max_pool(f, regions, lengths), (feat,))


@pytest.mark.parametrize("b,c,t,k,width", [(4, 128, 256, 256, 60), (2, 256, 512, 1000, 400), (1, 512, 2304, 2000, 300)])
def test_eq4_matches_reference_at_realistic_sizes(b, c, t, k, width):
    """Forward and gradients equal, on inputs without ties (integer output gradients: sums exact in any order)."""
    g = torch.Generator().manual_seed(t)
    feat = distinct_features((b, c, t), g)
    regions = random_regions(b, k, t, width, g)
    lengths = torch.randint(t // 2, t + 1, (b,), generator=g)
    grad_out = torch.randint(-4, 5, (b, c, k), generator=g).float()
    f_new, f_ref = feat.clone().requires_grad_(), feat.clone().requires_grad_()
    out_new, out_ref = boundary_max_pool(f_new, regions, lengths), reference.boundary_max_pool(f_ref, regions, lengths)
    assert torch.equal(out_new, out_ref)
    assert torch.equal(boundary_max_pool(feat, regions, lengths), out_ref)  # the no-grad path too
    out_new.backward(grad_out)
    out_ref.backward(grad_out)
    assert torch.equal(f_new.grad, f_ref.grad)
    assert f_new.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_eq4_ties_go_to_the_first_maximum(dtype, monkeypatch):
    """Many ties (a few integer levels, negative, -0.0 and +0.0): the packed-key path (in one block of channels
    and in blocks of one), the torch.where fallback and a loop agree on values and on the step each gradient goes
    to; the reference spreads each output's gradient over the same tied steps with the same sum."""
    g = torch.Generator().manual_seed(2)
    feat = torch.randint(-2, 3, (2, 6, 40), generator=g).to(dtype)
    feat[0, 0, :20] = -0.0
    feat[0, 1, :] = -3.0  # every region of this channel is one big tie
    regions = random_regions(2, 30, 40, 15, g)
    lengths = torch.tensor([40, 23])
    lo, hi = region_to_indices(regions, lengths)
    val_p, arg_p = boundary_pooling._query(feat, lo, hi, with_argmax=True)
    val_w, arg_w = boundary_pooling._query(feat, lo, hi, with_argmax=True, packed=False)
    assert torch.equal(val_p, val_w) and torch.equal(arg_p, arg_w)
    with monkeypatch.context() as m:
        m.setattr(boundary_pooling, "_TABLE_BYTES", 1)  # one channel per block
        val_1, arg_1 = boundary_pooling._query(feat, lo, hi, with_argmax=True)
        assert torch.equal(boundary_pooling._query(feat, lo, hi, with_argmax=False)[0], val_p)
    assert torch.equal(val_1, val_p) and torch.equal(arg_1, arg_p)
    assert torch.equal(val_p, naive_pool(feat.float(), regions, lengths).to(dtype))
    grad_out = torch.randint(1, 5, (2, 6, 30), generator=g).to(dtype)  # integer sums < 256: exact in bf16
    f = feat.clone().requires_grad_()
    boundary_max_pool(f, regions, lengths).backward(grad_out)
    assert torch.equal(f.grad.float(), first_argmax_grad(feat.float(), regions, lengths, grad_out.float()))
    for i, k in [(0, 0), (0, 7), (1, 3), (1, 29)]:  # one region at a time: where the reference puts its gradient
        one = torch.zeros(2, 6, 30, dtype=torch.float64)
        one[i, :, k] = 1.0
        f_ref = feat.double().requires_grad_()
        reference.boundary_max_pool(f_ref, regions, lengths).backward(one)
        seg = feat.double()[i, :, lo[i, k]:hi[i, k] + 1]  # (C, n)
        tied = seg == seg.max(dim=1, keepdim=True).values
        assert torch.all(f_ref.grad[i, :, lo[i, k]:hi[i, k] + 1][~tied] == 0)
        torch.testing.assert_close(f_ref.grad.sum(dim=(0, 2)), torch.ones(6, dtype=torch.float64))


def test_eq4_hand_example_with_ties():
    feat = torch.tensor([[[1.0, 3.0, 3.0, 0.0, 3.0, 1.0]]], requires_grad=True)  # the max 3 at steps 1, 2, 4
    regions = torch.tensor([[[0.0, 5.0], [1.5, 4.0], [0.0, 0.5]]])  # steps 0..5, 1..4, 0..1
    out = boundary_max_pool(feat, regions, torch.tensor([6]))
    assert out.tolist() == [[[3.0, 3.0, 3.0]]]
    out.backward(torch.tensor([[[1.0, 10.0, 100.0]]]))
    assert feat.grad.tolist() == [[[0.0, 111.0, 0.0, 0.0, 0.0, 0.0]]]  # all to step 1, the first maximum


def test_eq4_edge_cases():
    feat = torch.tensor([[[4.0, 7.0, 5.0]], [[2.0, 1.0, 8.0]]], requires_grad=True)  # (2, 1, 3)
    none = boundary_max_pool(feat, torch.zeros(2, 0, 2), torch.tensor([3, 3]))  # no region at all
    assert none.shape == (2, 1, 0)
    none.sum().backward()
    assert feat.grad.tolist() == [[[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]]
    feat.grad = None
    # a row with 0 valid steps pools step 0, as region_to_indices says; a 1-step feature has one table level
    out = boundary_max_pool(feat, torch.tensor([[[0.0, 2.0]], [[1.0, 2.0]]]), torch.tensor([3, 0]))
    assert out.tolist() == [[[7.0]], [[2.0]]]
    out.sum().backward()
    assert feat.grad.tolist() == [[[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]]]
    single = torch.tensor([[[-1.5]]], requires_grad=True)
    boundary_max_pool(single, torch.tensor([[[-3.0, 9.0], [0.0, 0.0]]]), torch.tensor([1])).sum().backward()
    assert single.grad.tolist() == [[[2.0]]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_eq4_nan_propagates_as_before(dtype):
    inf = torch.tensor(float("inf"), dtype=dtype)
    feat = torch.tensor([[[1.0, 0.0, 2.0, 3.0, -1.0]]], dtype=dtype)
    feat[0, 0, 1] = inf - inf  # NaN with the sign bit set on x86
    feat[0, 0, 4] = float("nan")
    regions, lengths = torch.tensor([[[0.0, 2.0], [2.0, 3.0], [3.0, 4.0]]]), torch.tensor([5])
    ref = reference.boundary_max_pool(feat, regions, lengths)
    for f in (feat, feat.clone().requires_grad_()):  # the no-grad and the autograd paths
        out = boundary_max_pool(f, regions, lengths)
        assert torch.equal(out.isnan(), ref.isnan()) and out[0, 0, 1].item() == 3.0
        assert out.isnan().tolist() == [[[True, False, True]]]


def test_eq4_bf16_autocast_conv_output():
    """Under CPU bf16 autocast a conv hands the pooling bf16 features: values and gradient dtype follow them."""
    g = torch.Generator().manual_seed(3)
    conv = torch.nn.Conv1d(4, 8, 3, padding=1)
    x = torch.randn(2, 4, 50, generator=g)
    regions, lengths = random_regions(2, 20, 50, 12, g), torch.tensor([50, 31])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feat = conv(x)  # (2, 8, 50) bf16
        feat.retain_grad()
        out = boundary_max_pool(feat, regions, lengths)
    assert feat.dtype == out.dtype == torch.bfloat16
    assert torch.equal(out, reference.boundary_max_pool(feat.detach(), regions, lengths))
    out.float().sum().backward()
    assert feat.grad.dtype == torch.bfloat16
    expected = first_argmax_grad(feat.detach().float(), regions, lengths, torch.ones(2, 8, 20))
    assert torch.equal(feat.grad.float(), expected)  # small integer counts: exact in bf16
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


def test_afsd_parameter_gradients_match_reference_pooling(monkeypatch):
    """One AFSD loss + backward with the new pooling and with the reference: the pooled features are ReLU outputs
    (ties only at 0, where ReLU passes no gradient), so every parameter gradient agrees."""
    def step():
        torch.manual_seed(0)
        model = AFSD(8, 3, width=16, levels=3)
        x = torch.randn(2, 8, 48)
        mask = torch.ones(2, 48, dtype=torch.bool)
        mask[1, 30:] = False
        targets = [{"segments": torch.tensor([[2.0, 9.0], [14.0, 33.0]]), "labels": torch.tensor([0, 2])},
                   {"segments": torch.tensor([[3.0, 6.0], [8.0, 26.0]]), "labels": torch.tensor([1, 1])}]
        losses = model.loss(model(x, mask), targets)
        assert losses["triplet"] > 0  # the contrastive clips' pooling is in the graph too
        losses["total"].backward()
        return losses["total"].detach(), {n: p.grad for n, p in model.named_parameters()}

    loss_new, grads_new = step()
    monkeypatch.setattr(heads, "boundary_max_pool", reference.boundary_max_pool)
    monkeypatch.setattr(afsd_model, "boundary_max_pool", reference.boundary_max_pool)
    loss_ref, grads_ref = step()
    # Same values; the reference returns a transposed view, so F.normalize sums in another order (last bits).
    assert loss_new.item() == pytest.approx(loss_ref.item(), rel=1e-6)
    assert grads_new.keys() == grads_ref.keys()
    scale = max(g.abs().max().item() for g in grads_ref.values())  # conv biases before GroupNorm get only noise
    for name in grads_new:
        torch.testing.assert_close(grads_new[name], grads_ref[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_eq7_boundary_targets():
    g_s, g_e = afsd_losses.boundary_targets(torch.tensor([[2.0, 12.0]]), 16, radius_min=1.0, radius_ratio=0.1)
    assert g_s.nonzero().flatten().tolist() == [1, 2, 3]  # |i - 2| <= max(1, 1.0)
    assert g_e.nonzero().flatten().tolist() == [11, 12, 13]


def test_eq6_8_activation_guided_bce():
    f_s = torch.zeros(1, 2, 3)
    f_s[0, :, 1] = torch.tensor([1.0, 3.0])  # g~^s = [0, (tanh 1 + tanh 3)/2, 0]
    f_e = torch.zeros(1, 2, 3)
    g_s = torch.tensor([[0.0, 1.0, 0.0]])
    g_e = torch.tensor([[0.0, 0.0, 1.0]])
    mask = torch.tensor([[True, True, True]])
    got = afsd_losses.activation_guided_loss(f_s, f_e, g_s, g_e, mask)
    eps = 1e-6
    p = (math.tanh(1) + math.tanh(3)) / 2
    start = (-math.log(1 - eps) - math.log(p) - math.log(1 - eps)) / 3
    end = (-math.log(1 - eps) - math.log(1 - eps) - math.log(eps)) / 3
    assert got.item() == pytest.approx(start + end, rel=1e-5)
    # masked steps do not count
    got_masked = afsd_losses.activation_guided_loss(f_s, f_e, g_s, g_e, torch.tensor([[True, True, False]]))
    assert got_masked.item() == pytest.approx(-math.log(p) / 2 + 2 * -math.log(1 - eps) / 2, rel=1e-5)


def test_eq9_triplet():
    a1e = torch.tensor([[0.0, 0.0]])
    a2s = torch.tensor([[1.0, 0.0]])  # ||.||^2 = 1
    bg = torch.tensor([[0.0, 0.5]])  # ||.||^2 = 0.25
    assert afsd_losses.boundary_triplet_loss(a1e, a2s, bg).item() == pytest.approx(1 - 0.25 + 1)
    far = torch.tensor([[0.0, 2.0]])  # 1 - 4 + 1 < 0 -> 0
    assert afsd_losses.boundary_triplet_loss(a1e, a2s, far).item() == 0.0


def test_focal_tiou_l1_quality_total():
    # softmax focal, 2 classes, logits equal: p_t = 0.5 -> (0.5)^2 * log 2
    focal = afsd_losses.softmax_focal_loss
    assert focal(torch.zeros(1, 2), torch.tensor([0])).item() == pytest.approx(0.25 * math.log(2))
    assert focal(torch.tensor([[0.0, 50.0]]), torch.tensor([1])).item() == pytest.approx(0, abs=1e-12)
    # eq. 13: [0,2] vs [1,3] -> tIoU 1/3
    assert afsd_losses.tiou_loss(torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 3.0]])).item() == pytest.approx(2 / 3)
    offset = afsd_losses.offset_l1_loss(torch.tensor([[0.5, -1.0]]), torch.tensor([[0.0, 0.0]]))
    assert offset.item() == pytest.approx(1.5)
    # eq. 14: BCE(sigmoid(0) = 0.5, 0.5) = log 2
    assert afsd_losses.quality_loss(torch.tensor([0.0]), torch.tensor([0.5])).item() == pytest.approx(math.log(2))
    # eq. 11 with lambda = 10, gamma = 1
    total = afsd_losses.afsd_total(*[torch.tensor(v) for v in (1.0, 2.0, 3.0, 4.0, 5.0)], lam=10, gamma=1)
    assert total.item() == pytest.approx(1 + 20 + 3 + 40 + 5)


def test_eq15_inference_and_offset_targets_invert_it():
    coarse = torch.tensor([[10.0, 20.0]])
    off = torch.tensor([[0.2, -0.4]])
    assert refine_segments(coarse, off).tolist() == [[11.0, 18.0]]  # +-w/2 * delta, w = 10
    gt = torch.tensor([[7.0, 26.0]])
    assert torch.allclose(refine_segments(coarse, offset_targets(coarse, gt)), gt)
    logits_c = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    logits_r = torch.log(torch.tensor([[0.1, 0.5, 0.4]]))
    y = fuse_scores(logits_c, logits_r, torch.tensor([0.0]))  # eta = 0.5
    assert torch.allclose(y, torch.tensor([[0.5 * 0.8 * 0.5, 0.5 * 0.6 * 0.5]]))


def test_label_assignment():
    pos = torch.tensor([0.0, 4.0, 8.0, 12.0])
    gt = torch.tensor([[3.0, 12.0], [7.0, 9.0]])
    lab = torch.tensor([2, 0])
    y, seg = coarse_targets(pos, gt, lab)
    assert y.tolist() == [0, 3, 1, 3]  # 8 is in both: the shorter action (class 0) wins
    assert seg[2].tolist() == [7.0, 9.0]
    coarse = torch.tensor([[3.0, 11.0], [0.0, 1.0]])  # tIoU 8/9 with gt 0; none
    y_r, seg_r = refined_targets(coarse, gt, lab)
    assert y_r.tolist() == [3, 0]
    assert seg_r[0].tolist() == [3.0, 12.0]


def test_contrastive_clip_is_a1_bg_a2():
    torch.manual_seed(0)
    t = 40
    x = torch.arange(t, dtype=torch.float32).repeat(2, 1)[None]  # (1, 2, T): channel value = step index
    # short action steps 2..5 (w_min = 4), long action steps 20..31 (12 > 8), background 6..19 and 32..39
    tgt = [{"segments": torch.tensor([[1.6, 5.4], [19.6, 31.4]]), "labels": torch.tensor([0, 1])}]
    clips, lengths, pieces = build_contrastive_clips(x, torch.tensor([t]), tgt)
    steps = clips[0, 0, :int(lengths[0])].tolist()
    n1 = int(pieces[0, 0, 1] + 0.5)
    a1, bg, a2 = steps[:n1], steps[n1:n1 + 4], steps[n1 + 4:]
    assert len(bg) == 4 and len(a1) >= 4 and len(a2) >= 4
    assert a1 + a2 == list(range(20, 32))  # the long action, cut once
    assert all((6 <= s <= 19) or s >= 32 for s in bg) and bg == list(range(int(bg[0]), int(bg[0]) + 4))
    # a video with a single action has no action longer than 2 * w_min: no clip
    assert build_contrastive_clips(x, torch.tensor([t]), [{"segments": torch.tensor([[3.0, 9.0]]),
                                                             "labels": torch.tensor([0])}]) is None


def test_forward_shapes_loss_terms_and_padding():
    torch.manual_seed(0)
    model = AFSD(8, 3, width=16, levels=3)
    x = torch.randn(2, 8, 21)  # T not a multiple of 4: padded inside
    mask = torch.ones(2, 21, dtype=torch.bool)
    mask[1, 15:] = False
    out = model(x, mask)
    k = 24 + 12 + 6
    assert out["coarse"].shape == (2, k, 2) and out["logits_r"].shape == (2, k, 4) and out["quality"].shape == (2, k)
    assert out["valid"][1].sum().item() == 15 + 8 + 4
    targets = [{"segments": torch.tensor([[2.0, 9.0], [12.0, 19.0]]), "labels": torch.tensor([0, 2])},
               {"segments": torch.zeros(0, 2), "labels": torch.zeros(0, dtype=torch.long)}]
    losses = model.loss(out, targets)
    terms = {"total", "cls_coarse", "loc_coarse", "cls_refined", "loc_refined", "quality", "act", "triplet"}
    assert terms <= set(losses)
    main = afsd_losses.afsd_total(losses["cls_coarse"], losses["loc_coarse"], losses["cls_refined"],
                                  losses["loc_refined"], losses["quality"])
    assert losses["total"].item() == pytest.approx((main + losses["act"] + losses["triplet"]).item(), rel=1e-6)
    losses["total"].backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "cls_ref_out" in n or "offset_out" in n)


def test_overfit_tiny_synthetic():
    before, after = overfit_recall(lambda: AFSD(16, 2, width=32, levels=4), lr=3e-3)
    assert after >= 0.7 and after > before + 0.3, (before, after)
