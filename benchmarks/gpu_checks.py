"""The CUDA checks of the GPU smoke script (benchmarks/gpu_smoke.py), on any device: tests/test_cuda.py runs them
under pytest where a GPU is present, the smoke script's `--device cpu --quick` dry run on the CPU.

Each check raises AssertionError saying what went wrong, or returns a one-line note of what it saw.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

DETECTORS = ("afsd", "actionformer", "tridet", "tadtr")
BF16_RTOL = 0.03  # |bf16 - fp32| / fp32 of one step's loss (tests/test_precision.py: the same, and why)


def _tiny_batch(dev, length: int = 96, channels: int = 16):
    from tal_pipeline.stages.detectors.data import build_training_set, collate, crop_item
    from tests.synthetic_features import synthetic_feature_dataset

    feats, ann, labels, grid, _ = synthetic_feature_dataset(num_videos=2, channels=channels, num_classes=3,
                                                            min_len=length, max_len=length)
    items = build_training_set(feats, ann, labels, grid)
    return collate([crop_item(it, 0, length) for it in items], dev), len(labels)


def check_gpu_count(dev, quick: bool = False) -> str:
    """The scheduler's GPU count (NVML, CUDA_VISIBLE_DEVICES applied) agrees with torch's."""
    from tal_pipeline.stages.runtime import visible_gpu_count

    seen, want = visible_gpu_count(), (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert seen == want, f"scheduler sees {seen} GPU(s), torch {want}"
    return f"{seen} GPU(s) seen"


def check_bf16_steps(dev, quick: bool = False) -> str:
    """One training step of every detector under bf16 autocast on `dev`: finite loss and gradients, within
    BF16_RTOL of the fp32 step on the same weights and batch."""
    from tal_pipeline.models.detector_registry import build_detector, resolve_model_config
    from tal_pipeline.stages.precision import as_fp32, autocast

    (x, mask, targets), classes = _tiny_batch(dev)
    worst = 0.0
    for name in DETECTORS:
        torch.manual_seed(0)
        model = build_detector(name, x.shape[1], classes, resolve_model_config(name, {"width": 32})).to(dev).train()
        totals = []
        for precision in ("fp32", "bf16"):
            run = copy.deepcopy(model)  # fresh: the loss normaliser (ActionFormer, TriDet) moves with each loss
            torch.manual_seed(1)
            with autocast(dev, precision):
                out = run(x, mask)
            loss = run.loss(as_fp32(out), targets)["total"]
            loss.backward()
            assert torch.isfinite(loss), f"{name} {precision}: loss {float(loss)}"
            assert all(torch.isfinite(p.grad).all() for p in run.parameters() if p.grad is not None), \
                f"{name} {precision}: non-finite gradient"
            totals.append(float(loss.detach()))
        rel = abs(totals[1] - totals[0]) / abs(totals[0])
        assert rel <= BF16_RTOL, f"{name}: bf16 loss {totals[1]:.4g} vs fp32 {totals[0]:.4g}"
        worst = max(worst, rel)
    return f"4 detectors, worst loss gap (bf16 - fp32) / fp32 = {worst:.3f}"


def check_deterministic_training(dev, quick: bool = False) -> str:
    """Two seeded training runs of every detector (quick: ActionFormer alone, one epoch) in deterministic mode on
    `dev` give bitwise-equal weights."""
    from tal_pipeline.stages.detectors.training import train_detector
    from tests.synthetic_features import synthetic_feature_dataset

    feats, ann, labels, grid, _ = synthetic_feature_dataset(num_videos=3, channels=16, num_classes=2, min_len=60,
                                                            max_len=80)
    names = ("actionformer",) if quick else DETECTORS
    for name in names:
        cfg = {"epochs": 1 if quick else 2, "model": {"width": 32}, "max_seq_len": 64}
        runs = [train_detector(name, feats, ann, labels, grid, cfg, seed=5, device=str(dev), progress=False,
                               deterministic=True) for _ in range(2)]
        (s1, _, l1), (s2, _, l2) = runs
        assert [r["total"] for r in l1] == [r["total"] for r in l2], f"{name}: losses differ between seeded runs"
        assert all(torch.equal(s1[k], s2[k]) for k in s1), f"{name}: weights differ between seeded runs"
    return f"{len(names)} detector(s) repeat bitwise"


def check_no_syncs_in_pooling(dev, quick: bool = False) -> str:
    """AFSD's boundary pooling, forward and backward, with CUDA's sync debug mode set to error (CPU: not checked)."""
    from tal_pipeline.models.afsd.boundary_pooling import boundary_max_pool

    feat = torch.randn(2, 64, 300, device=dev).relu().requires_grad_(True)
    regions = (torch.rand(2, 50, 2, device=dev).sort(-1).values * 300)
    lengths = torch.tensor([300, 250], device=dev)
    if dev.type != "cuda":
        boundary_max_pool(feat, regions, lengths).sum().backward()
        return "ran (sync detection needs CUDA)"
    torch.cuda.set_sync_debug_mode("error")
    try:
        boundary_max_pool(feat, regions, lengths).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return "forward + backward without a host sync"


def check_bf16_encoder(dev, quick: bool = False) -> str:
    """The encoder trains an epoch in bf16 on `dev` with finite losses close to fp32's first step."""
    from tal_pipeline.stages.bapg.encoder import train_encoder
    from tests.synthetic_features import synthetic_feature_dataset

    feats, ann, _, grid, _ = synthetic_feature_dataset(num_videos=3, channels=16, num_classes=2, min_len=60,
                                                       max_len=80)
    base = {"epochs": 1, "iterations_per_epoch": 1 if quick else 2, "batch_size": 32}
    rows = {p: train_encoder(feats, ann, grid, {**base, "precision": p}, device=str(dev), progress=False)[2]
            for p in ("fp32", "bf16")}
    assert all(np.isfinite(r["loss"]) for r in rows["bf16"])
    gap = abs(rows["bf16"][0]["loss"] - rows["fp32"][0]["loss"])
    assert gap <= 0.05, f"encoder: first bf16 loss {rows['bf16'][0]['loss']:.4f} vs fp32 {rows['fp32'][0]['loss']:.4f}"
    return f"first-step loss gap {gap:.4f}"


CHECKS = (check_gpu_count, check_bf16_steps, check_bf16_encoder, check_deterministic_training,
          check_no_syncs_in_pooling)
