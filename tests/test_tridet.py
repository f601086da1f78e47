"""TriDet: the SGP layer (its equation, masks, the masked GroupNorm), the pyramid's shapes and padding, the
Trident-head's relative boundary decoding on hand-made bins, the detached boundary heads, the IoU-weighted focal
loss, short training runs, and a checkpoint round trip through the registry."""
import math

import pytest
import torch

from tal_pipeline.models.tridet.boundaries import boundary_distances, neighbour_responses
from tal_pipeline.models.tridet.groupnorm import MaskedGroupNorm
from tal_pipeline.models.tridet.losses import iou_weighted_focal_loss
from tal_pipeline.models.tridet.model import TriDet
from tal_pipeline.models.tridet.sgp import SGPLayer, long_kernel
from tests.synthetic_features import recall_at, synthetic_feature_dataset

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # deterministic, and fair to other tests

# Small, and acting fully from the start (LayerScale 1, large SGP weights): a leak cannot hide behind a 1e-4 scale.
SMALL = {"width": 16, "levels": 3, "layer_scale_init": 1.0, "sgp_init_std": 0.5, "window": 3, "k": 1.5}


def _pad_with_garbage(x, mask, extra, scale=50.0):
    xp = torch.cat([x, torch.randn(x.shape[0], x.shape[1], extra) * scale], dim=2)
    mp = torch.cat([mask, torch.zeros(mask.shape[0], extra, dtype=torch.bool)], dim=1)
    return xp, mp


def test_long_kernel_is_odd():
    assert long_kernel(1, 5.0) == 11  # THUMOS14: round(2 * 5) = 10 -> 11
    assert long_kernel(3, 1.5) == 7 and long_kernel(15, 1.3) == 21 and long_kernel(5, 2.0) == 13


def test_sgp_mix_is_the_papers_equation():
    torch.manual_seed(0)
    layer = SGPLayer(2, window=1, k=1.0, groups=1)  # k_w = 3
    with torch.no_grad():
        layer.fc.weight.fill_(2.0)
        layer.fc.bias.fill_(0.5)
        layer.global_fc.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1))
        layer.conv_w.weight.fill_(3.0)
        layer.psi.weight.fill_(-1.0)
        layer.conv_kw.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).expand(2, 1, 3))  # output t reads z[t - 1]
    z = torch.randn(1, 2, 6)
    m = torch.tensor([[[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]]])
    z = z * m
    got = layer.mix(z, m)
    mean = z[..., :4].mean(-1, keepdim=True)  # over the 4 real steps only
    phi = torch.relu(torch.tensor([1.0, -1.0]).view(1, 2, 1) * mean)
    previous = torch.nn.functional.pad(z, (1, 0))[..., :6]
    want = (phi * (2.0 * z + 0.5) + (-z) * (3.0 * z + previous) + z) * m
    torch.testing.assert_close(got, want)


def test_masked_group_norm_equals_group_norm_unpadded_and_ignores_padding():
    torch.manual_seed(0)
    norm = MaskedGroupNorm(4, 16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    x = torch.randn(2, 16, 9) * 3 + 1
    full = torch.ones(2, 9, dtype=torch.bool)
    torch.testing.assert_close(norm(x, full), torch.nn.functional.group_norm(x, 4, norm.weight, norm.bias))
    mask = full.clone()
    mask[1, 5:] = False
    xp, mp = _pad_with_garbage(x, mask, 7)
    a, b = norm(x, mask), norm(xp, mp)
    torch.testing.assert_close(a[1, :, :5], norm(x[1:, :, :5], full[1:, :5])[0])  # as if the video were cut there
    torch.testing.assert_close(a * mask[:, None], b[..., :9] * mp[:, None, :9])
    assert torch.all(b[..., 9:] == 0) and torch.all(a[1, :, 5:] == 0)


@pytest.mark.parametrize("stride", [1, 2])
def test_sgp_shapes_and_padded_steps_never_change_real_outputs(stride):
    torch.manual_seed(0)
    layer = SGPLayer(16, window=3, k=1.5, stride=stride, layer_scale_init=1.0, init_std=0.5).eval()
    x = torch.randn(2, 16, 20)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 13:] = False
    x[1, :, 13:] = 7.0  # garbage under the mask
    y, m = layer(x, mask)
    assert y.shape == (2, 16, 20 // stride) and torch.equal(m, mask[:, ::stride])
    xp, mp = _pad_with_garbage(x, mask, 12)  # other content, other length past the real steps
    yp, mp2 = layer(xp, mp)
    assert torch.equal(mp2[:, :20 // stride], m)
    torch.testing.assert_close(y * m[:, None], yp[..., :20 // stride] * m[:, None], atol=1e-5, rtol=1e-5)
    assert torch.all(yp[~mp2[:, None].expand_as(yp)] == 0)
    # ... while the real steps do mix: the last real step moves its neighbours (window) and, through the global
    # mean, every real step of its video, and nothing of the other video
    x2 = x.clone()
    x2[1, :, 12] += 5.0
    y2, _ = layer(x2, mask)
    assert not torch.allclose(y2[1, :, 0], y[1, :, 0]) and torch.equal(y2[0], y[0])


def test_pyramid_shapes_arch_2_2_5():
    model = TriDet(10, 3)  # the reference arch: 2 embedding convs, 2 stem layers, 5 down-sampling layers
    assert (len(model.backbone.embed), len(model.backbone.stem), len(model.backbone.branch)) == (2, 2, 5)
    assert model.strides == [1, 2, 4, 8, 16, 32]
    assert model.backbone.stem[0].conv_kw.kernel_size == (11,) and model.backbone.stem[0].psi.kernel_size == (1,)
    assert model.backbone.stem[0].rate == 0.0 and model.backbone.stem[0].scale_sgp is None  # stem: neither
    down = model.backbone.branch[0]
    assert down.rate == 0.1 and torch.allclose(down.scale_sgp.detach(), torch.full((64, 1), 1e-4))
    x, mask = torch.randn(2, 10, 100), torch.ones(2, 100, dtype=torch.bool)
    mask[1, 37:] = False
    feats, masks = model.backbone(torch.nn.functional.pad(x, (0, 28)), torch.nn.functional.pad(mask, (0, 28)))
    assert [tuple(f.shape) for f in feats] == [(2, 64, 128 // 2 ** i) for i in range(6)]
    out = model(x, mask)
    k = sum(128 // 2 ** i for i in range(6))
    assert out["logits"].shape == (2, k, 3) and out["dists"].shape == (2, k, 3, 2) and out["valid"].shape == (2, k)
    assert out["positions"][128:128 + 64].tolist() == [2.0 * i for i in range(64)]
    assert [int(out["valid"][b].sum()) for b in range(2)] == [sum(math.ceil(n / 2 ** i) for i in range(6))
                                                             for n in (100, 37)]
    assert torch.all(out["dists"] >= 0) and torch.all(out["dists"] <= 16)  # expectations over bins 0 .. 16


def test_padded_tail_never_changes_real_outputs():
    torch.manual_seed(0)
    model = TriDet(6, 2, **SMALL).eval()
    x = torch.randn(2, 6, 21)
    mask = torch.ones(2, 21, dtype=torch.bool)
    mask[1, 13:] = False
    x_clean = x * mask[:, None]
    xp, mp = _pad_with_garbage(x, mask, 11)  # 21 -> 24 steps vs 32 -> 32 steps, garbage in both tails
    with torch.no_grad():
        a, b = model(x_clean, mask), model(xp, mp)
    for i in range(2):
        va, vb = a["valid"][i], b["valid"][i]
        assert torch.equal(a["positions"][va], b["positions"][vb])
        torch.testing.assert_close(a["logits"][i][va], b["logits"][i][vb], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a["dists"][i][va], b["dists"][i][vb], atol=1e-5, rtol=1e-5)
    # the end distance of the last real location of video 1 (step 12, level 0) reaches past it (issue 26)
    assert torch.all(a["dists"][1, 12, :, 1] > 0)


def test_neighbour_windows_follow_the_bins():
    response = torch.arange(6.0).view(1, 1, 6)  # the response at step t is t
    mask = torch.tensor([[True] * 5 + [False]])
    start = neighbour_responses(response, mask, 2, "start")[0, 0]  # (T, 3): [t, d] = response[t - d]
    end = neighbour_responses(response, mask, 2, "end")[0, 0]  # [t, d] = response[t + d]
    # outside the sequence and on the padded step 5: response 0, as the reference's zero padding
    assert start.tolist() == [[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 2, 1], [4, 3, 2], [0, 4, 3]]
    assert end.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 0], [4, 0, 0], [0, 0, 0]]


def test_one_hot_bins_give_their_distance_exactly():
    b, c, t, bins = 1, 2, 20, 16
    mask = torch.ones(b, t, dtype=torch.bool)
    centre = torch.zeros(b, 2, bins + 1, t)
    centre[:, 0, 3] = 1e4  # start: bin 3 everywhere; end: bin 5
    centre[:, 1, 5] = 1e4
    d = boundary_distances(torch.zeros(b, c, t), torch.zeros(b, c, t), centre, mask)  # (B, T, C, 2)
    assert d.shape == (b, t, c, 2)
    # at every step, the first and last included: bins past either end of the sequence stay reachable
    assert torch.all(d[0, :, :, 0] == 3.0) and torch.all(d[0, :, :, 1] == 5.0)


def test_relative_boundary_response_of_each_class():
    t, bins = 24, 16
    mask = torch.ones(1, t, dtype=torch.bool)
    mask[0, 18:] = False
    start, end = torch.zeros(1, 2, t), torch.zeros(1, 2, t)
    start[0, 0, 4] = 1e4  # class 0 starts at step 4 ...
    end[0, 0, 15] = 1e4  # ... and ends at step 15
    end[0, 1, 20] = 1e4  # a peak on a padded step: ignored
    d = boundary_distances(start, end, torch.zeros(1, 2, bins + 1, t), mask)[0]  # (T, C, 2)
    for step in range(4, 16):
        assert d[step, 0].tolist() == [step - 4, 15 - step]
    # class 1 has no real peak (the one on a padded step counts as 0, like the reference's padding): uniform over
    # all 17 bins, inside the sequence or not
    assert d[2, 1, 0] == 8.0 and d[17, 1, 1] == 8.0 and d[16, 1, 1] == 8.0
    centre = torch.zeros(1, 2, bins + 1, t)
    centre[0, 0, 2] = 2e4  # the centre-offset logit adds to the response: bin 2 beats the start peak
    assert boundary_distances(start, end, centre, mask)[0, 10, 0, 0] == 2.0


def test_predict_scales_each_classes_distances_by_the_stride():
    model = TriDet(4, 2, width=16, levels=2, score_thresh=0.1)
    k = 6  # level 0: positions 0..3 (stride 1); level 1: positions 0, 2 (stride 2)
    logits = torch.full((1, k, 2), -20.0)
    logits[0, 5] = torch.tensor([3.0, 2.0])  # both classes at position 2 of level 1
    dists = torch.zeros(1, k, 2, 2)
    dists[0, 5, 0] = torch.tensor([1.5, 2.0])  # class 0: [2 - 3, 2 + 4]
    dists[0, 5, 1] = torch.tensor([0.5, 0.25])  # class 1: [1, 2.5]
    outputs = {"logits": logits, "dists": dists, "valid": torch.ones(1, k, dtype=torch.bool),
               "positions": torch.tensor([0.0, 1, 2, 3, 0, 2]), "strides": torch.tensor([1.0, 1, 1, 1, 2, 2])}
    segs, scores, labels = model.predict(outputs)[0]
    assert labels.tolist() == [0, 1] and segs.tolist() == [[-1.0, 6.0], [1.0, 2.5]]
    torch.testing.assert_close(scores, torch.sigmoid(torch.tensor([3.0, 2.0])))


def test_boundary_heads_are_trained_on_detached_features():
    torch.manual_seed(0)
    model = TriDet(6, 2, **SMALL)
    with torch.no_grad():
        model.head.centre_head.out.weight.zero_()  # cut the centre-offset branch: only start / end remain
    out = model(torch.randn(2, 6, 16), torch.ones(2, 16, dtype=torch.bool))
    out["dists"].sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.backbone.parameters())
    assert model.head.start_head.out.weight.grad.abs().sum() > 0 and model.head.end_head.out.weight.grad.any()
    model.zero_grad()
    model(torch.randn(2, 6, 16), torch.ones(2, 16, dtype=torch.bool))["logits"].sum().backward()
    assert model.backbone.embed[0].conv.weight.grad.abs().sum() > 0  # the classification head does reach it


def test_iou_weighted_focal_loss_by_hand():
    logits, targets = torch.zeros(2, 3), torch.zeros(2, 3)
    targets[1, 2] = 1.0
    iou = torch.tensor([0.5], requires_grad=True)
    got = iou_weighted_focal_loss(logits, targets, torch.tensor([1]), torch.tensor([2]), iou, power=0.2)
    # logit 0: p = 0.5, BCE = log 2, (1 - p_t)^2 = 0.25; alpha_t 0.25 for the positive, 0.75 for the 5 negatives
    want = (0.5 ** 0.2 * 0.25 + 5 * 0.75) * 0.25 * math.log(2)
    assert got.item() == pytest.approx(want, rel=1e-6)
    assert not got.requires_grad  # the weight is a rating of the localisation, not a path to it


def _tiny_batch():
    torch.manual_seed(0)
    x, mask = torch.randn(2, 6, 32), torch.ones(2, 32, dtype=torch.bool)
    targets = [{"segments": torch.tensor([[4.0, 10.0], [14.0, 28.0]]), "labels": torch.tensor([0, 1])},
               {"segments": torch.tensor([[2.0, 9.0]]), "labels": torch.tensor([1])}]
    return x, mask, targets


def test_a_few_training_steps_lower_the_loss_and_localise_the_actions():
    torch.manual_seed(0)
    # 4 bins: on 32 steps most of 16 bins lie past the sequence, where (as in the reference) the response is 0 and
    # only the centre-offset branch can push them down: 16 bins learn the same, but in more steps
    model = TriDet(6, 2, width=16, levels=3, num_bins=4)
    x, mask, targets = _tiny_batch()
    gts = [(t["segments"], t["labels"]) for t in targets]

    def evaluate():  # in eval mode; losses times the normaliser (which training moves)
        model.eval()
        with torch.no_grad():
            out = model(x, mask)
            losses = {k: float(v) * model.loss_normalizer for k, v in model.loss(out, targets).items()}
            recall = recall_at(model.predict(out), gts, thr=0.7, top=1)  # the best detection of each class
        model.train()
        return losses, recall

    before, recall_before = evaluate()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(40):
        loss = model.loss(model(x, mask), targets)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, recall_after = evaluate()
    assert after["total"] < 0.5 * before["total"] and after["reg"] < 0.8 * before["reg"], (before, after)
    assert (recall_before, recall_after) == (0.0, 1.0)  # seeds 0-2: 0 -> 1 at tIoU 0.7


def test_checkpoint_round_trip_through_the_registry(tmp_path):
    from tal_pipeline.models.detector_registry import build_detector, resolve_model_config
    from tal_pipeline.stages.detectors.checkpoint import load_checkpoint_file
    from tal_pipeline.stages.detectors.detection import detect, load_detector
    from tal_pipeline.stages.detectors.recipe import FeaturesRecipe, InferenceRecipe

    feats, ann, labels, grid, durations = synthetic_feature_dataset(num_videos=2, channels=8, num_classes=2, seed=4,
                                                                    min_len=40, max_len=50)
    # options that differ from the defaults, each changing the weights' shapes or the outputs
    options = resolve_model_config("tridet", {"width": 16, "levels": 3, "num_bins": 8, "window": 3, "k": 2.0,
                                              "score_thresh": 0.02, "layer_scale_init": 1.0})
    torch.manual_seed(0)
    model = build_detector("tridet", 8, 2, options)
    x, mask, targets = _tiny_batch()
    x = torch.randn(2, 8, 32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):  # weights away from their initial values
        loss = model.loss(model(x, mask), targets)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    cfg = {"name": "tridet", "in_channels": 8, "num_classes": 2, "labels": labels, "bapg_channels": 0,
           "model": options, "fusion": None, "bapg": False, "max_seq_len": 256, "input_length": None,
           "class_agnostic": False, "train": {"inference_len": None, "precision": "fp32"},
           "inputs": InferenceRecipe(FeaturesRecipe("ImportFeatures", 4, 2, None)).to_dict()}
    torch.save({"state": model.state_dict(), "config": cfg}, tmp_path / "checkpoint.pt")
    ckpt = load_checkpoint_file(tmp_path / "checkpoint.pt")
    rebuilt, _ = load_detector(ckpt["state"], ckpt["config"], "cpu")
    assert rebuilt.num_bins == 8 and rebuilt.score_thresh == 0.02
    model.eval()
    with torch.no_grad():
        for (sa, pa, la), (sb, pb, lb) in zip(model.predict(model(x, mask)), rebuilt.predict(rebuilt(x, mask))):
            assert len(sa) > 0 and torch.equal(sa, sb) and torch.equal(pa, pb) and torch.equal(la, lb)
    found = detect("tridet", ckpt["state"], ckpt["config"], feats, labels, grid, durations)
    assert set(found) == set(feats) and all(len(v) > 0 for v in found.values())


def test_train_detector_trains_tridet_and_its_health_check_works():
    from tal_pipeline.stages.detectors.training import train_detector

    feats, ann, labels, grid, _ = synthetic_feature_dataset(num_videos=6, channels=32, num_classes=2, seed=2,
                                                            min_len=48, max_len=72)
    config = {"epochs": 20, "lr": 1e-3, "warmup_epochs": 1, "model": {"width": 32, "levels": 4}}
    _, cfg, log = train_detector("tridet", feats, ann, labels, grid, config=config, seed=0, device="cpu",
                                 progress=False)
    assert cfg["model"]["num_bins"] == 16 and cfg["train"]["weight_decay"] == 0.025  # TriDet's recipe
    assert cfg["health"]["positive_share"] >= 0.9 and cfg["health"]["loss_ratio"] < 0.7, cfg["health"]
    assert len(log) == 40


def test_layer_scale_of_the_down_sampling_layers_is_a_named_option():
    """`layer_scale_init` (issue 26 finding 3): the reference's 1e-4 by default, on the down-sampling layers only
    (the stem has none, as in the reference); any value or None (no LayerScale) on request."""
    default = TriDet(6, 2, width=16, levels=3)
    assert all(layer.scale_sgp is None and layer.scale_mlp is None for layer in default.backbone.stem)
    assert all(torch.all(layer.scale_sgp == 1e-4) and torch.all(layer.scale_mlp == 1e-4)
               for layer in default.backbone.branch)
    assert all(torch.all(layer.scale_sgp == 1.0) for layer in TriDet(6, 2, width=16, levels=3,
                                                                     layer_scale_init=1.0).backbone.branch)
    assert all(layer.scale_sgp is None for layer in TriDet(6, 2, width=16, levels=3,
                                                          layer_scale_init=None).backbone.branch)
