"""The options the published recipes need, each off by default (the small recipes unchanged): weight-decay
exemption, lr_min / step schedules, fixed training windows, detection windows of inference_len, absolute position
encoding, label smoothing, per-level top-k and per-level attention windows."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tal_pipeline.models.actionformer.losses import sigmoid_focal_loss, smooth_labels
from tal_pipeline.models.actionformer.model import ActionFormer
from tal_pipeline.models.actionformer.position import sinusoid_position
from tal_pipeline.models.nms import select_detections
from tal_pipeline.models.tridet.model import TriDet
from tal_pipeline.stages.detectors.data import VideoItem
from tal_pipeline.stages.detectors.detection import detect, load_detector, predict_video
from tal_pipeline.stages.detectors.optim import learning_rate, parameter_groups, slice_items
from tal_pipeline.stages.detectors.training import DEFAULT_TRAIN, resolve_train_config, train_detector
from tal_pipeline.stages.runtime import lr_at
from tests.synthetic_features import synthetic_feature_dataset


def _tiny_af(**kw) -> ActionFormer:
    torch.manual_seed(0)
    return ActionFormer(6, 2, width=16, levels=3, window=5, **kw)


def test_decay_exemption_spares_biases_norms_and_layer_scales(torch_one_thread):
    model = _tiny_af()
    plain = parameter_groups(model, 0.05, exempt=False)
    assert len(plain) == 1 and plain[0]["weight_decay"] == 0.05 and plain[0]["lr_scale"] == 1.0
    groups = parameter_groups(model, 0.05, exempt=True)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] for p in g["params"]}
    spared = {names[id(p)] for g in groups if not g["weight_decay"] for p in g["params"]}
    assert decayed | spared == set(names.values()) and not decayed & spared
    assert all(n.endswith("weight") for n in decayed)  # conv / linear weights only
    assert any(n.endswith(".scale") for n in spared) and any(n.endswith("bias") for n in spared)
    norms = {f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, torch.nn.LayerNorm)}
    assert norms and norms <= spared
    # one AdamW step on zero gradients: decay shrinks the decayed weights only
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(groups, lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        moved = not torch.equal(p.detach(), before[n])
        assert moved == (n in decayed and bool(before[n].abs().sum())), n


def test_learning_rate_schedules():
    cfg = resolve_train_config("actionformer", {})
    # the default is today's warm-up + cosine to 0, to the bit
    assert all(learning_rate(s, 100, 10, cfg, 5) == lr_at(s, 100, 10, cfg["lr"]) for s in range(101))
    cos = {**cfg, "lr": 1e-3, "lr_min": 5e-5}
    assert learning_rate(100, 100, 10, cos, 5) == pytest.approx(5e-5)
    assert learning_rate(55, 100, 10, cos, 5) == pytest.approx((1e-3 + 5e-5) / 2)
    assert learning_rate(4, 100, 10, cos, 5) == pytest.approx(5e-4)  # warm-up from 0 as before
    step = {**cfg, "lr": 2e-4, "lr_steps": [14], "lr_gamma": 0.1}  # TadTR: x 0.1 from epoch 14
    assert learning_rate(14 * 3 - 1, 48, 0, step, 3) == 2e-4
    assert learning_rate(14 * 3, 48, 0, step, 3) == pytest.approx(2e-5)
    assert {learning_rate(s, 48, 0, {**step, "lr_steps": []}, 3) for s in range(48)} == {2e-4}
    with pytest.raises(ValueError, match="lr_steps"):
        resolve_train_config("tadtr", {"lr_steps": "14"})
    with pytest.raises(ValueError, match="slice_overlap"):
        resolve_train_config("tadtr", {"slice_overlap": 1.0})


def test_slice_items_covers_every_window_with_an_action():
    feats = np.arange(100, dtype=np.float32)[:, None]
    item = VideoItem("v", feats, np.array([[12.0, 18.0], [95.0, 99.0]], np.float32), np.array([0, 1]))
    windows = slice_items([item], 40, 0.75)  # hop 10: starts 0, 10, .., 60
    assert [w.video for w in windows] == ["v@0", "v@10", "v@60"]  # 20 .. 50 hold no action
    assert np.allclose(windows[1].segments, [[2.0, 8.0]]) and windows[1].features[0, 0] == 10.0
    assert np.allclose(windows[-1].segments, [[35.0, 39.0]]) and windows[-1].features.shape == (40, 1)
    assert [w.video for w in slice_items([item], 200, 0.5)] == ["v@0"]  # a short video is one window


@pytest.fixture(scope="module")
def tiny_data():
    return synthetic_feature_dataset(4, channels=6, num_classes=2, seed=5, min_len=60, max_len=80)


def test_training_with_slices_and_exemption_runs_every_window(tiny_data, torch_one_thread):
    feats, ann, labels, grid, _ = tiny_data
    cfg = {"epochs": 2, "batch_size": 2, "max_seq_len": 32, "slice_overlap": 0.5, "decay_exempt": True,
           "lr_steps": [1], "ema_decay": 0.0, "warmup_epochs": 0, "model": {"width": 16, "levels": 3}}
    from tal_pipeline.stages.detectors.data import build_training_set

    windows = slice_items(build_training_set(feats, ann, labels, grid), 32, 0.5)
    _, config, log = train_detector("actionformer", feats, ann, labels, grid, cfg, seed=0, progress=False)
    assert config["iterations"] == 2 * math.ceil(len(windows) / 2) and len(windows) > len(feats)
    assert {r["lr"] for r in log if r["epoch"] == 1} == {DEFAULT_TRAIN["lr"] * 0.1}


def test_detection_windows_follow_inference_len(tiny_data, torch_one_thread):
    feats, ann, labels, grid, durations = tiny_data
    cfg = {"epochs": 1, "max_seq_len": 16, "model": {"width": 16, "levels": 3}}
    state, config, _ = train_detector("actionformer", feats, ann, labels, grid, cfg, seed=0, progress=False)
    video = sorted(feats)[0]
    model, dev = load_detector(state, config, "cpu")
    whole = predict_video(model, dev, feats[video], 128, 50)  # one window over the whole video
    windowed = predict_video(model, dev, feats[video], 16, 50)
    config = {**config, "train": {**config["train"], "inference_len": 128}}
    got = detect("actionformer", state, config, {video: feats[video]}, labels, grid, durations, 50, "cpu")[video]
    expect = grid.to_seconds(whole[0])
    assert len(got) == len(whole[0]) and np.allclose([d["segment"] for d in got], np.clip(expect, 0,
                                                                                          durations[video]))
    assert len(windowed[0]) != len(whole[0]) or not np.allclose(windowed[0], whole[0])


def test_sinusoid_position_is_the_reference_table():
    length, width = 7, 6
    table = np.array([[t / np.power(10000, 2 * (j // 2) / width) for j in range(width)] for t in range(length)])
    table[:, 0::2], table[:, 1::2] = np.sin(table[:, 0::2]), np.cos(table[:, 1::2])
    assert torch.allclose(sinusoid_position(length, width), torch.tensor(table.T / math.sqrt(width),
                                                                         dtype=torch.float32), atol=1e-6)


@pytest.mark.parametrize("cls", [ActionFormer, TriDet])
def test_abs_pe_acts_and_stays_independent_of_padding(cls, torch_one_thread):
    torch.manual_seed(0)
    with_pe = cls(6, 2, width=16, levels=3, abs_pe=True).eval()
    without = cls(6, 2, width=16, levels=3).eval()
    without.load_state_dict(with_pe.state_dict())  # no new parameters: the same weights
    x = torch.randn(1, 6, 24)
    mask = torch.ones(1, 24, dtype=torch.bool)
    padded = torch.cat([x, torch.randn(1, 6, 16)], -1)
    pmask = torch.cat([mask, torch.zeros(1, 16, dtype=torch.bool)], -1)
    a, b, c = with_pe(x, mask), with_pe(padded, pmask), without(x, mask)
    k = a["logits"].shape[1]
    real = a["valid"][0]
    assert not torch.allclose(a["logits"], c["logits"])
    # the same real locations with and without padding (the pyramid's level offsets shift: compare per level)
    for stride in (1, 2, 4):
        la = a["logits"][0][(a["strides"] == stride) & real]
        lb = b["logits"][0][(b["strides"] == stride) & b["valid"][0]]
        assert torch.allclose(la, lb, atol=1e-5), stride
    assert k == real.numel()


def test_label_smoothing_is_the_references_target():
    t = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(smooth_labels(t, 0.1), torch.tensor([[0.925, 0.025, 0.025], [0.025, 0.025, 0.025]]))
    assert smooth_labels(t, 0.0) is t
    model = _tiny_af(label_smoothing=0.1)
    x, mask = torch.randn(1, 6, 32), torch.ones(1, 32, dtype=torch.bool)
    targets = [{"segments": torch.tensor([[4.0, 12.0]]), "labels": torch.tensor([1])}]
    out = model(x, mask)
    (cls_t, _, _), = model._assign(out, targets)
    v = out["valid"][0]
    want = sigmoid_focal_loss(out["logits"][0][v], smooth_labels(cls_t[v], 0.1)) / model.loss_normalizer
    model.eval()  # keep the normaliser where it is
    assert torch.allclose(model.loss(out, targets)["cls"], want)


def test_topk_per_level_keeps_candidates_of_every_level():
    segs = torch.tensor([[0.0, 2.0], [4.0, 6.0], [8.0, 10.0], [12.0, 14.0]])
    scores = torch.tensor([[0.9], [0.8], [0.2], [0.1]])
    valid = torch.ones(4, dtype=torch.bool)
    levels = torch.tensor([1.0, 1.0, 2.0, 2.0])
    _, s_all, _ = select_detections(segs, scores, valid, 1e-3, 1, 0.5, 10)
    _, s_lvl, _ = select_detections(segs, scores, valid, 1e-3, 1, 0.5, 10, levels=levels)
    assert torch.allclose(s_all, torch.tensor([0.9])) and torch.allclose(s_lvl, torch.tensor([0.9, 0.2]))
    torch.manual_seed(0)
    for cls in (ActionFormer, TriDet):
        model = cls(6, 2, width=16, levels=3, pre_nms_topk=1, topk_per_level=True).eval()
        out = model(torch.randn(1, 6, 32), torch.ones(1, 32, dtype=torch.bool))
        assert len(model.predict(out)[0][0]) == 3  # one per level (disjoint enough not to be suppressed)
        model.topk_per_level = False
        assert len(model.predict(out)[0][0]) == 1


def test_min_duration_drops_short_candidates():
    segs = torch.tensor([[0.0, 0.04], [4.0, 6.0], [8.0, 8.0]])
    scores = torch.tensor([[0.9], [0.5], [0.8]])
    valid = torch.ones(3, dtype=torch.bool)
    _, s0, _ = select_detections(segs, scores, valid, 1e-3, 10, 0.5, 10)
    _, s1, _ = select_detections(segs, scores, valid, 1e-3, 10, 0.5, 10, min_duration=0.05)
    assert torch.allclose(s0, torch.tensor([0.9, 0.5])) and torch.allclose(s1, torch.tensor([0.5]))


def test_attention_windows_per_level():
    model = ActionFormer(6, 2, width=16, levels=4, window=[3, 5, 7, 13])
    assert [b.attn.window for b in model.backbone.stem] == [3, 3]
    assert [b.attn.window for b in model.backbone.branch] == [5, 7, 13]
    with pytest.raises(ValueError, match="3 attention windows given for 4 pyramid levels"):
        ActionFormer(6, 2, width=16, levels=4, window=[3, 5, 7])
