"""TriDet's SGP layer and Trident-head at the level of their equations (§3.2, §3.3) against the reference's
formulas, and the Trident-head's end bins (issue 26, defect 1).

The reference (dingfengshi/TriDet, libs/modeling/meta_archs.py: losses / inference_single_video / decode_offset)
pads each boundary head's output with num_bins zeros (left of the start head, right of the end head), takes for
location t the window of its B + 1 neighbours, adds the centre-offset logits, and returns the expectation of the
softmax over bin distances (start bins in reversed order). Its boundary heads end in masked convs, so a padded
step's response is 0 as well. `_reference_distances` below writes that formula out with plain indexing; the
project's `boundary_distances` must give the same distances, bin order aside.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from tal_pipeline.models.actionformer.targets import assign_targets
from tal_pipeline.models.tridet.boundaries import boundary_distances
from tal_pipeline.models.tridet.model import TriDet
from tal_pipeline.models.tridet.sgp import SGPLayer

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _reference_distances(start, end, centre_ref, mask):
    """The reference's decoding, written as loops over bins: start, end (B, C, T) responses; centre_ref (B, 2,
    N + 1, T) centre-offset logits in the reference's channel order (start channel j is distance N - j); mask (B, T).
    -> (B, T, C, 2) expected distances in stride units."""
    b, c, t = start.shape
    n = centre_ref.shape[2] - 1
    m = mask[:, None, :].to(start.dtype)
    start, end = start * m, end * m  # a masked conv's output is 0 on padded steps
    zeros = torch.zeros(b, c, n)
    s_pad, e_pad = torch.cat([zeros, start], -1), torch.cat([end, zeros], -1)  # (B, C, T + N)
    out = torch.zeros(b, t, c, 2)
    for step in range(t):
        left = s_pad[:, :, step:step + n + 1] + centre_ref[:, None, 0, :, step]  # (B, C, N+1): steps step-N .. step
        right = e_pad[:, :, step:step + n + 1] + centre_ref[:, None, 1, :, step]  # steps step .. step+N
        left_idx = torch.arange(n, -1, -1, dtype=start.dtype)  # window slot j lies N - j steps before
        right_idx = torch.arange(n + 1, dtype=start.dtype)
        out[:, step, :, 0] = (torch.softmax(left, -1) * left_idx).sum(-1)
        out[:, step, :, 1] = (torch.softmax(right, -1) * right_idx).sum(-1)
    return out


@pytest.mark.parametrize("padded", [False, True])
def test_distances_equal_the_reference_formula(padded):
    torch.manual_seed(0)
    b, c, t, n = 2, 3, 23, 6
    start, end = torch.randn(b, c, t) * 3, torch.randn(b, c, t) * 3
    centre_ref = torch.randn(b, 2, n + 1, t) * 2
    mask = torch.ones(b, t, dtype=torch.bool)
    if padded:
        mask[1, 15:] = False  # video 1: 15 real steps, then padding the reference sees as zeros
    centre = centre_ref.clone()
    centre[:, 0] = centre_ref[:, 0].flip(1)  # our start channel d is the reference's channel N - d
    ours = boundary_distances(start, end, centre, mask)  # (B, T, C, 2)
    ref = _reference_distances(start, end, centre_ref, mask)
    real = mask[:, :, None, None].expand_as(ours)
    torch.testing.assert_close(ours[real], ref[real], atol=1e-5, rtol=1e-5)
    # the end bins are in use: the last real steps' end distances reach past the sequence (bins of response 0)
    assert ours[0, -1, :, 1].min() > 0 and ours[1, 14, :, 1].min() > 0


def _hand_set_head(model, targets):
    """Boundary responses 0 everywhere; centre-offset logits constant, so the distribution over bins puts weight
    frac on ceil(x) and 1 - frac on floor(x): the expectation is x exactly, for (start, end) = targets."""
    head = model.head
    with torch.no_grad():
        for branch in (head.start_head, head.end_head):
            branch.out.weight.zero_()
            branch.out.bias.zero_()
        head.centre_head.out.weight.zero_()
        bias = torch.full((2, model.num_bins + 1), -1e9)  # (side, bin): no weight but on the two bins around x
        for side, x in enumerate(targets):
            lo = math.floor(x)
            bias[side, lo] = math.log(1.0 - (x - lo))
            if x > lo:
                bias[side, lo + 1] = math.log(x - lo)
        head.centre_head.out.bias.copy_(bias.reshape(-1))


def test_an_action_ending_on_the_last_step_is_reachable_on_its_coarsest_level():
    """ActivityNet-shaped: 192 steps, action [40, 191]. Only level 5 (stride 32, range [64, inf)) takes it; its
    last real location is step 160, 31 steps before the action's end: the end needs bin 1, whose neighbour
    (step 192) lies past the input. The model decodes the exact segment with a head set by hand."""
    torch.manual_seed(0)
    t, gt = 192, torch.tensor([[40.0, 191.0]])
    model = TriDet(8, 2).eval()
    x = torch.randn(1, 8, t)
    out = model(x, torch.ones(1, t, dtype=torch.bool))
    cls_t, reg_t, pos = assign_targets(out["positions"], out["strides"], out["ranges"], gt, torch.tensor([1]), 2)
    levels = out["strides"][pos].unique()
    assert levels.tolist() == [32.0]  # the coarsest (and only) level the regression ranges give it
    k = int(torch.nonzero(pos & (out["positions"] == 160.0) & (out["strides"] == 32.0))[0])
    target = reg_t[k].tolist()  # (start, end) in stride units
    assert target == [120 / 32, 31 / 32]
    _hand_set_head(model, target)
    with torch.no_grad():
        out = model(x, torch.ones(1, t, dtype=torch.bool))
    torch.testing.assert_close(out["dists"][0, k, 1], torch.tensor(target), atol=1e-5, rtol=0)
    out["logits"] = torch.full_like(out["logits"], -20.0)
    out["logits"][0, k, 1] = 5.0  # the one confident candidate: class 1 at that location
    segs, _, labels = model.predict(out)[0]
    assert labels[0] == 1
    torch.testing.assert_close(segs[0], gt[0], atol=1e-3, rtol=0)


def test_every_level_reaches_the_end_of_the_input_and_padding_changes_nothing():
    """With all weight on bin B, the last real location of every level decodes an end num_bins strides later,
    past the input's last step (the old -inf end bins held it at its own position); a video padded in a batch
    with a longer one decodes the same distances."""
    torch.manual_seed(0)
    t = 192
    model = TriDet(8, 2, levels=6, num_bins=4).eval()
    _hand_set_head(model, (0.0, 4.0))
    x = torch.randn(1, 8, t)
    longer = torch.cat([x, torch.randn(1, 8, 100) * 50], dim=2)  # garbage in the padded tail
    mask = torch.ones(1, t + 100, dtype=torch.bool)
    batch = torch.cat([longer, torch.randn(1, 8, t + 100)]), torch.stack([mask[0] & (torch.arange(t + 100) < t),
                                                                         mask[0]])
    with torch.no_grad():
        alone, padded = model(x, torch.ones(1, t, dtype=torch.bool)), model(*batch)
    for stride in [2.0 ** i for i in range(6)]:
        level = alone["valid"][0] & (alone["strides"] == stride)
        last = int(torch.nonzero(level)[-1])
        end = alone["positions"][last] + alone["dists"][0, last, :, 1] * stride
        assert torch.all(end >= t - 1) and torch.all(end == alone["positions"][last] + 4 * stride)
    va, vb = alone["valid"][0], padded["valid"][0]
    torch.testing.assert_close(alone["dists"][0][va], padded["dists"][0][vb], atol=1e-5, rtol=0)
    torch.testing.assert_close(alone["logits"][0][va], padded["logits"][0][vb], atol=1e-5, rtol=1e-5)


def _reference_sgp_block(layer: SGPLayer, x: torch.Tensor, stride: int) -> torch.Tensor:
    """The reference's SGPBlock.forward (libs/modeling/blocks.py) on an unpadded (B, D, T), written out with our
    layer's weights: max-pool (kernel 3, stride 2, padding 1) to down-sample; z = LN(x); f = FC(z) * ReLU(FC'(mean_t
    z)) + (Conv_w(z) + Conv_kw(z)) * psi(z) + z; x + LayerScale * f; then + LayerScale * MLP(GroupNorm(.))."""
    if stride > 1:
        x = F.max_pool1d(x, 3, stride=2, padding=1)
    z = F.layer_norm(x.transpose(1, 2), (x.shape[1],), layer.norm.norm.weight, layer.norm.norm.bias).transpose(1, 2)
    phi = torch.relu(layer.global_fc(z.mean(dim=-1, keepdim=True)))
    f = layer.fc(z) * phi + (layer.conv_w(z) + layer.conv_kw(z)) * layer.psi(z) + z
    out = x + layer.scale_sgp * f
    gn = F.group_norm(out, layer.group_norm.groups, layer.group_norm.weight, layer.group_norm.bias)
    return out + layer.scale_mlp * layer.mlp(gn)


@pytest.mark.parametrize("stride", [1, 2])
def test_sgp_layer_equals_the_reference_block_on_an_unpadded_input(stride):
    torch.manual_seed(0)
    layer = SGPLayer(32, window=3, k=1.5, stride=stride, groups=16, layer_scale_init=1.0, init_std=0.5).eval()
    with torch.no_grad():
        for p in (layer.scale_sgp, layer.scale_mlp, layer.norm.norm.weight, layer.group_norm.weight):
            p.uniform_(0.5, 1.5)  # LayerScales and gains as training leaves them
        layer.group_norm.bias.normal_(0.0, 0.3)
    x = torch.randn(2, 32, 40)
    got, mask = layer(x, torch.ones(2, 40, dtype=torch.bool))
    with torch.no_grad():
        want = _reference_sgp_block(layer, x, stride)
    assert mask.all() and got.shape == want.shape == (2, 32, 40 // stride)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
