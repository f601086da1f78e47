"""bf16 (issue 28 item 2): one training step of every detector and of the encoder under
torch.autocast("cpu", dtype=torch.bfloat16) gives finite losses within a stated tolerance of fp32; coordinates stay
exact; the precision setting is recorded and shapes the artifact hash, while fp32 keeps today's paths."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tal_pipeline.models.detector_registry import build_detector, resolve_model_config
from tal_pipeline.stages.detectors.data import build_training_set, collate, crop_item
from tal_pipeline.stages.detectors.detection import detect
from tal_pipeline.stages.detectors.training import train_detector
from tal_pipeline.stages.precision import as_fp32, autocast
from tests.synthetic_features import synthetic_feature_dataset

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# |bf16 loss - fp32 loss| / fp32 loss for one step on the same weights and batch: bf16 keeps 8 bits of mantissa
# (0.4 % per rounding); measured 0.05-1.0 % over the four detectors on CPU (TadTR the most), so 3 %.
LOSS_RTOL = 0.03
SMALL = {"afsd": {"width": 32}, "actionformer": {"width": 32}, "tridet": {"width": 32}, "tadtr": {"width": 32}}


def _batch(seed: int = 0, length: int = 96):
    feats, ann, labels, grid, _ = synthetic_feature_dataset(num_videos=2, channels=16, num_classes=3, seed=seed,
                                                            min_len=length, max_len=length)
    items = build_training_set(feats, ann, labels, grid)
    return collate([crop_item(it, 0, length) for it in items], torch.device("cpu")), len(labels)


@pytest.mark.parametrize("name", sorted(SMALL))  # the built-in four (a test may register a toy one)
def test_one_bf16_step_of_every_detector_is_finite_and_close_to_fp32(name):
    (x, mask, targets), classes = _batch()
    torch.manual_seed(0)
    model = build_detector(name, x.shape[1], classes, resolve_model_config(name, SMALL[name])).train()

    def step(bf16: bool) -> dict:
        run = copy.deepcopy(model)  # a fresh copy: the loss normaliser (ActionFormer, TriDet) moves with each loss
        torch.manual_seed(1)  # the same dropout and sampled clips in both runs
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # the whole step, loss included
            losses = run.loss(run(x, mask), targets)
        losses["total"].backward()
        grads = [p.grad for p in run.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), f"{name}: non-finite gradient"
        return {k: float(v.detach()) for k, v in losses.items()}

    fp32, bf16 = step(False), step(True)
    assert all(np.isfinite(v) for v in bf16.values()), (name, bf16)
    assert abs(bf16["total"] - fp32["total"]) <= LOSS_RTOL * abs(fp32["total"]), (name, fp32, bf16)


def test_positions_stay_exact_under_bf16_at_the_published_length():
    """bf16 holds whole numbers only up to 256: an arange in the activations' dtype was off by up to 8 steps."""
    t = 2304
    x = torch.randn(1, 8, t)
    mask = torch.ones(1, t, dtype=torch.bool)
    for name in ("actionformer", "tridet"):
        model = build_detector(name, 8, 2, resolve_model_config(name, {"width": 16})).eval()
        with torch.no_grad(), autocast(torch.device("cpu"), "bf16"):
            out = model(x, mask)
        assert out["positions"].dtype == torch.float32
        levels = [torch.arange(t // s, dtype=torch.float32) * s for s in model.strides]
        assert torch.equal(out["positions"], torch.cat(levels)), name


def test_afsd_decodes_bf16_distances_on_exact_fp32_steps():
    """Eq. 1 with bf16 distances (an autocast head's output): the locations were a bf16 arange, 8 steps apart
    near 2,304; now fp32 steps, so zero distances decode to the exact locations."""
    from tal_pipeline.models.afsd.heads import decode_coarse

    t = 2304
    start, end = decode_coarse(torch.zeros(1, 2, t, dtype=torch.bfloat16), 1)
    assert start.dtype == torch.float32 and torch.equal(start[0], torch.arange(t, dtype=torch.float32))
    assert torch.equal(end, start)


def test_as_fp32_casts_lower_precision_leaves_only():
    tree = {"a": torch.ones(2, dtype=torch.bfloat16), "b": [torch.ones(1, dtype=torch.float16), torch.ones(1).long()],
            "c": (torch.ones(1, dtype=torch.float64), 3)}
    out = as_fp32(tree)
    assert out["a"].dtype == torch.float32 and out["b"][0].dtype == torch.float32
    assert out["b"][1].dtype == torch.long and out["c"][0].dtype == torch.float64 and out["c"][1] == 3


@pytest.mark.parametrize("name", ["actionformer", "tadtr"])
def test_bf16_training_and_detection_end_to_end(name):
    feats, ann, labels, grid, durations = synthetic_feature_dataset(num_videos=3, channels=16, num_classes=2,
                                                                    min_len=60, max_len=80)
    config = {"epochs": 2, "precision": "bf16", "model": SMALL[name], "max_seq_len": 64}
    state, cfg, rows = train_detector(name, feats, ann, labels, grid, config, progress=False, device="cpu")
    assert cfg["train"]["precision"] == "bf16" and len(rows) == cfg["iterations"] == 2
    assert all(np.isfinite(r["total"]) for r in rows)
    dets = detect(name, state, cfg, feats, cfg["labels"], grid, durations, device="cpu")
    assert set(dets) == set(feats) and any(dets.values())
    with pytest.raises(ValueError, match="precision must be one of"):
        train_detector(name, feats, ann, labels, grid, {**config, "precision": "fp16"}, progress=False)


def test_bf16_encoder_step_is_finite_and_close_to_fp32():
    from tal_pipeline.stages.bapg.encoder import embed, train_encoder

    feats, ann, _, grid, _ = synthetic_feature_dataset(num_videos=3, channels=16, num_classes=2, min_len=60,
                                                       max_len=80)
    base = {"epochs": 1, "iterations_per_epoch": 1, "batch_size": 32}
    _, _, rows32 = train_encoder(feats, ann, grid, base, seed=0, device="cpu", progress=False)
    state, cfg, rows16 = train_encoder(feats, ann, grid, {**base, "precision": "bf16"}, seed=0, device="cpu",
                                       progress=False)
    assert cfg["train"]["precision"] == "bf16" and np.isfinite(rows16[0]["loss"])
    for key in ("loss", "s_ap", "s_an"):  # the same sampled triplets; s and the loss are computed in fp32
        assert abs(rows16[0][key] - rows32[0][key]) <= 0.05, (key, rows16[0], rows32[0])
    z = embed(state, cfg, next(iter(feats.values())), device="cpu")
    assert z.dtype == np.float32 and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-2)


def test_precision_shapes_the_hash_and_fp32_keeps_the_paths():
    from luigi.cmdline_parser import CmdlineParser

    from pipeline.bapg_tasks import TrainEncoder
    from pipeline.detector_tasks import TrainDetector

    with CmdlineParser.global_instance(["TrainDetector"]):
        default_detector, default_encoder = TrainDetector().output().path, TrainEncoder().output().path
        assert TrainEncoder(options={"precision": "fp32"}).output().path == default_encoder
        assert TrainEncoder(options={"precision": "bf16"}).output().path != default_encoder
    with CmdlineParser.global_instance(["TrainDetector", "--actionformer-train", '{"precision": "fp32"}']):
        assert TrainDetector().output().path == default_detector
    with CmdlineParser.global_instance(["TrainDetector", "--actionformer-train", '{"precision": "bf16"}']):
        assert TrainDetector().output().path != default_detector
