"""Detector training: the per-detector training recipes, the training loop (AdamW, warm-up + cosine lr, EMA
weights) and the post-training health check (pure functions; the TrainDetector task wraps them).

Checkpoint = (model_state: dict[str, Tensor], config_dict: JSON-able dict); both load with
torch.load(..., weights_only=True). Model selection never looks at a test split: train_detector returns
the EMA weights after the last epoch.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.stages.detectors.data import (
    VideoItem,
    bapg_statistics,
    build_training_set,
    collate,
    crop_item,
    epoch_batches,
    random_crop,
    window_starts,
)
from tal_pipeline.stages.loss_log import LossLog
from tal_pipeline.stages.precision import DEFAULT_PRECISION, as_fp32, autocast, check_precision
from tal_pipeline.stages.runtime import (
    TrainingProgress,
    WeightAverage,
    deterministic_mode,
    ema_decay_at,
    lr_at,
    resolve_device,
    seed_everything,
)

DEFAULT_TRAIN: dict[str, Any] = {
    "epochs": 30,
    "batch_size": 4,
    "lr": 1e-3,
    "weight_decay": 0.01,
    "warmup_epochs": 3,
    "max_seq_len": 256,
    "grad_clip": 1.0,
    "ema_decay": 0.999,
    "crop_tries": 10,
    # Random crop of every training video to a share in [lo, hi] of its length (then at most max_seq_len);
    # None: crop only videos longer than max_seq_len. A cut action is kept when >= trunc_thresh of it remains.
    "crop_ratio": None,
    "trunc_thresh": 0.5,
    # Health check after training (a run is flagged, never dropped): foreground locations whose predicted
    # start and end distances are both positive, and the trained weights' loss against the initial weights'.
    "health_min_positive_share": 0.9,
    "health_max_loss_ratio": 0.7,
    # Fixed-length inputs (the ActivityNet recipe, stages.presets): every video's features (and BAPG channels)
    # linearly resized to input_length steps, its time grid resampled with them (stages.detectors.resize);
    # None: the native grid. class_agnostic: one foreground class (FOREGROUND) for every action; the classes come
    # from video-level scores (stages.classification).
    "input_length": None,
    "class_agnostic": False,
    # Batches of videos of similar length (stages.detectors.data.epoch_batches): each run of length_bucket batches
    # of the epoch's random order is sorted by length, so a batch pads less; 0: plain random batches.
    "length_bucket": 0,
    # fp32 | bf16: the forward pass of training and of detection under bf16 autocast (stages.precision); fp32 does
    # not shape the artifact path (the paths of before the setting existed).
    "precision": DEFAULT_PRECISION,
}
# The one class of a class-agnostic detector.
FOREGROUND = "action"
# Per-detector recipes. ActionFormer follows the published THUMOS14 recipe (AdamW, weight decay 0.05, 5 warm-up
# epochs then cosine, always a random 90-100 % crop) except for lr and length, chosen on held-out training
# videos of the default synthetic run (benchmarks/bench_detector_recipe.py, 2 folds x 3 seeds), never on the
# test split: held-out average mAP 59.6 (lr 1e-4, 80 epochs), 73.6 (5e-4), 76.8 (1e-3), 57.5 (2e-3),
# 83.3 (1e-3, 160 epochs); the reference's lr 1e-4 is for ~3500 iterations, a small dataset gets a few hundred.
# TadTR: the reference's windows of 128 feature steps (its THUMOS14 slice_len), weight decay 1e-4 and gradient
# clipping at 0.1 (AdamW); lr and length chosen on held-out training videos of the THUMOS14-shaped benchmark (40
# fit / 20 held out, seed 0; docs/method.md §8): average mAP 24.9 (lr 2e-4, 60 epochs), 36.1 (1e-3, 60), 42.5
# (1e-3, 160), 34.2 (2e-3, 160); ActionFormer's recipe: 53.1. The reference's lr 2e-4 is for 16 epochs over every
# window (one every 32 steps) at batch 16; here an epoch is one window per video.
# TriDet: the published THUMOS14 recipe (AdamW, weight decay 0.025, 20 warm-up + 20 cosine epochs, a random 90-100 %
# crop; EMA weights as every detector here) except lr 1e-3 for 1e-4, chosen on held-out training videos of the
# THUMOS14-shaped benchmark (2 folds of 30, seed 0): average mAP 9.9 (lr 1e-4; folds 8.0 / 11.7), 46.1 (1e-3;
# 50.3 / 41.9), 49.5 (1e-3, 160 epochs, 5 warm-up; 48.2 / 50.7: within the fold spread at 4x the cost). The
# published lr is for ~4,000 iterations (200 videos at batch 2, 40 epochs); 60 videos at batch 4 give 600.
DETECTOR_TRAIN: dict[str, dict[str, Any]] = {
    "actionformer": {"epochs": 160, "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 5, "crop_ratio": [0.9, 1.0]},
    "tadtr": {"epochs": 160, "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 5, "grad_clip": 0.1,
              "max_seq_len": 128},
    "tridet": {"epochs": 40, "lr": 1e-3, "weight_decay": 0.025, "warmup_epochs": 20, "crop_ratio": [0.9, 1.0]},
}
TRAIN_KEYS = frozenset(DEFAULT_TRAIN)
# Training settings that moved elsewhere: named in the error, so an old luigi.cfg is fixed in one step.
MOVED_KEYS = {"fusion_lr_scale": 'the fusion settings: [<detector>] fusion = {"lr_scale": ...}'}


def resolve_train_config(name: str, config: Mapping | None = None) -> dict[str, Any]:
    """Training settings of detector `name`: given values over its recipe over DEFAULT_TRAIN (unknown keys refused).

    config may also hold "model" (detector options) and "fusion" (BAPG fusion settings); they are passed through
    unresolved (train_detector resolves them, once).
    """
    config = dict(config or {})
    nested = {k: dict(config.pop(k) or {}) for k in ("model", "fusion") if k in config}
    unknown = sorted(set(config) - TRAIN_KEYS)
    if unknown:
        moved = "".join(f"; {k} is now in {MOVED_KEYS[k]}" for k in unknown if k in MOVED_KEYS)
        raise ValueError(f"detector {name!r}: unknown training setting(s) {unknown}{moved}; known: "
                         f"{sorted(TRAIN_KEYS)}")
    cfg = {**DEFAULT_TRAIN, **DETECTOR_TRAIN.get(name, {}), **config}
    if cfg["crop_ratio"] is not None:
        lo, hi = (float(x) for x in cfg["crop_ratio"])
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"detector {name!r}: crop_ratio must be [lo, hi] with 0 < lo <= hi <= 1, got "
                             f"{cfg['crop_ratio']}")
        cfg["crop_ratio"] = [lo, hi]
    if cfg["input_length"] is not None and (isinstance(cfg["input_length"], bool) or
                                            int(cfg["input_length"]) != cfg["input_length"] or cfg["input_length"] < 1):
        raise ValueError(f"detector {name!r}: input_length must be null or a whole number >= 1, got "
                         f"{cfg['input_length']}")
    if not isinstance(cfg["class_agnostic"], bool):
        raise ValueError(f"detector {name!r}: class_agnostic must be true or false, got {cfg['class_agnostic']!r}")
    check_precision(cfg["precision"], f"detector {name!r}")
    for key in ("epochs", "batch_size", "max_seq_len", "length_bucket"):
        least = 0 if key in ("epochs", "length_bucket") else 1
        if isinstance(cfg[key], bool) or int(cfg[key]) != cfg[key] or cfg[key] < least:
            raise ValueError(f"detector {name!r}: {key} must be a whole number >= {least}, got {cfg[key]}")
    return {**cfg, "model": nested.get("model", {}), "fusion": nested.get("fusion", {})}


def _windows(item: VideoItem, max_seq_len: int):
    """One training video whole, in windows of at most max_seq_len steps: [(features, segments, labels)]."""
    size = min(item.features.shape[0], int(max_seq_len))
    return [crop_item(item, s0, size) for s0 in window_starts(item.features.shape[0], size)]


def training_health(model, initial_state: Mapping, items: list[VideoItem], log_rows: list[dict], cfg: Mapping,
                    dev, seed: int = 0) -> dict:
    """The post-training health check: a run is flagged (never dropped) when its regression branch has
    collapsed on the foreground or training did not lower its loss.

    positive_share: over the training videos (whole, in windows of max_seq_len), the share of foreground
    locations whose predicted start and end distances are both positive (the model's regression_health; a
    set-prediction detector, TadTR, counts its matched queries instead: see its "criterion", recorded as
    positive_share_of).
    loss_ratio: the loss of the trained weights / that of the initial weights, both on those same windows in
    eval mode (a fair comparison: a loss normaliser that moves during training, as ActionFormer's EMA one does,
    makes the raw first- and last-epoch losses incomparable; both are recorded too).
    """
    import torch

    batches = [collate(_windows(it, cfg["max_seq_len"]), dev) for it in items]
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    was_training = model.training
    model.eval()

    def mean_loss() -> float:
        torch.manual_seed(seed)  # auxiliary losses that sample clips (AFSD's BCL) draw the same ones each time
        return float(np.mean([float(model.loss(model(x, m), t)["total"]) for x, m, t in batches]))

    fg, positive = 0, 0.0
    # What a detector counts (its regression_health "criterion"); dense detectors: the default below.
    criterion = "foreground locations whose predicted start and end distances are both positive"
    with torch.no_grad():
        for x, mask, targets in batches:
            h = model.regression_health(model(x, mask), targets)
            criterion = h.get("criterion", criterion)
            if h["fg_locations"]:
                fg += h["fg_locations"]
                positive += h["positive_share"] * h["fg_locations"]
        loss_trained = mean_loss()
        model.load_state_dict(dict(initial_state))
        loss_initial = mean_loss()
        model.load_state_dict(trained)
    model.train(was_training)
    epochs = sorted({r["epoch"] for r in log_rows})
    health: dict[str, Any] = {"fg_locations": fg, "positive_share": positive / fg if fg else None,
                              "loss_initial_weights": loss_initial, "loss_trained_weights": loss_trained,
                              "loss_ratio": loss_trained / max(loss_initial, 1e-12),
                              "loss_first_epoch": None, "loss_last_epoch": None, "epochs": len(epochs), "problems": [],
                              "positive_share_of": criterion}
    if epochs:
        health["loss_first_epoch"] = float(np.mean([r["total"] for r in log_rows if r["epoch"] == epochs[0]]))
        health["loss_last_epoch"] = float(np.mean([r["total"] for r in log_rows if r["epoch"] == epochs[-1]]))
        if health["positive_share"] is not None and health["positive_share"] < cfg["health_min_positive_share"]:
            health["problems"].append(f"regression branch collapsed: only {100 * health['positive_share']:.1f} % "
                                      f"of {criterion} (needs >= {100 * cfg['health_min_positive_share']:.0f} %)")
        if not np.isfinite(health["loss_ratio"]) or health["loss_ratio"] > cfg["health_max_loss_ratio"]:
            health["problems"].append(f"loss did not fall: {loss_trained:.4g} with the trained weights vs "
                                      f"{loss_initial:.4g} with the initial ones on the training videos (ratio "
                                      f"{health['loss_ratio']:.2f} > {cfg['health_max_loss_ratio']})")
    # An untrained run (the report's sanity floor) has nothing to check: healthy is None, not False.
    health["healthy"] = (not health["problems"]) if epochs else None
    if not epochs:
        health["note"] = "not trained (0 epochs): not checked"
    return health


def _train_loop(model, opt, ema, items, lengths, cfg, dev, rng, total: int, warmup: int, log: LossLog,
                bar: TrainingProgress) -> int:
    """The epochs of training: the forward pass under the precision's autocast, the loss in fp32 on its fp32
    outputs, the loss terms kept on the device (LossLog: copied out every LOG_EVERY steps). Returns the steps."""
    import torch

    step = 0
    for epoch in range(cfg["epochs"]):
        for batch_videos in epoch_batches(lengths, cfg["batch_size"], int(cfg["length_bucket"]), rng):
            batch = [random_crop(items[j], cfg["max_seq_len"], rng, cfg["crop_tries"], cfg["crop_ratio"],
                                 cfg["trunc_thresh"] if cfg["crop_ratio"] is not None else 0.0)
                     for j in batch_videos]
            x, mask, targets = collate(batch, dev)
            lr = lr_at(step, total, warmup, cfg["lr"])
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_scale"]
            with autocast(dev, cfg["precision"]):
                outputs = model(x, mask)
            losses = model.loss(as_fp32(outputs), targets)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            if cfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            opt.step()
            ema.update(ema_decay_at(step, cfg["ema_decay"]))
            log.add({"epoch": epoch, "iteration": step, "lr": lr}, losses)
            step += 1
            bar.iteration(None if log.pending else log.last("total"))
        bar.epoch(epoch)
    log.flush()
    return step


def train_detector(name: str, features: Mapping[str, np.ndarray], annotations, labels: list[str],
                   time_grid: TimeGrid | Mapping[str, TimeGrid], config: Mapping | None = None, seed: int = 0,
                   device: str = "auto", progress: bool = True, bapg_channels: int = 0, on_epoch=None,
                   deterministic: bool = False) -> tuple[dict, dict, list[dict]]:
    """Train detector `name` on all videos of `features`; returns (model_state, config_dict, log_rows).

    config: training settings (DEFAULT_TRAIN keys) plus "model" (detector options) and "fusion" (BAPG fusion
    settings, lr_scale included); see resolve_train_config. Both are resolved here, once, and built as resolved.
    bapg_channels > 0: the last bapg_channels of every feature array are BAPG channels, standardised with this
    training split's statistics and fused by models.fusion.BAPGFusion.
    model_state: EMA weights after the last epoch (dict of CPU tensors). config_dict: JSON-able, with the fully
    resolved model, fusion and training settings and the health check (config_dict["health"]), enough for
    `detect`. log_rows: one dict per iteration with epoch, iteration, lr and every loss term.
    on_epoch(epoch_done, epochs): called after every epoch (progress reporting). deterministic: run under
    stages.runtime.deterministic_mode (a seeded CUDA run then repeats exactly; slower).
    """
    with deterministic_mode(deterministic):
        state, config_dict, log_rows = _train_detector(name, features, annotations, labels, time_grid, config, seed,
                                                       device, progress, bapg_channels, on_epoch)
    config_dict["deterministic"] = bool(deterministic)
    return state, config_dict, log_rows


def _train_detector(name, features, annotations, labels, time_grid, config, seed, device, progress, bapg_channels,
                    on_epoch) -> tuple[dict, dict, list[dict]]:
    import torch

    from tal_pipeline.models.detector_registry import build_detector, resolve_fusion_config, resolve_model_config

    cfg = resolve_train_config(name, config)
    model_cfg = resolve_model_config(name, cfg["model"])
    fusion_cfg = resolve_fusion_config(cfg["fusion"]) if bapg_channels else None
    if not labels:
        raise ValueError("empty class list")
    grid = time_grid.to_attrs() if isinstance(time_grid, TimeGrid) else None  # one (native) grid for every video
    if cfg["class_agnostic"]:  # one foreground class; config_dict["labels"] is [FOREGROUND]
        annotations = annotations.assign(label=FOREGROUND)
        labels = [FOREGROUND]
    if cfg["input_length"] is not None:
        from tal_pipeline.stages.detectors.resize import resize_videos

        features, time_grid = resize_videos(features, time_grid, int(cfg["input_length"]))
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    dev = resolve_device(device)
    items = build_training_set(features, annotations, labels, time_grid)
    in_channels = items[0].features.shape[1]
    model = build_detector(name, in_channels, len(labels), model_cfg, bapg_channels=bapg_channels, fusion=fusion_cfg)
    if bapg_channels:
        model.set_bapg_statistics(*bapg_statistics(items, bapg_channels))
    model = model.to(dev)
    model.train()
    # +BAPG: the fusion layers learn at the fusion settings' lr_scale (models.fusion.BAPGFusion.parameter_groups).
    groups = model.parameter_groups() if bapg_channels else [{"params": list(model.parameters()), "lr_scale": 1.0}]
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    per_epoch = math.ceil(len(items) / cfg["batch_size"])
    lengths = np.array([it.features.shape[0] for it in items])
    total = per_epoch * cfg["epochs"]
    warmup = per_epoch * cfg["warmup_epochs"]
    ema = WeightAverage(model)
    initial = {k: v.detach().clone() for k, v in ema.state.items()}  # for the health check's loss comparison
    log_rows: list[dict] = []
    bar = TrainingProgress(total, cfg["epochs"], f"train {name}", progress, on_epoch)
    step = _train_loop(model, opt, ema, items, lengths, cfg, dev, rng, total, warmup, LossLog(
        log_rows, f"detector {name}"), bar)
    bar.close()
    ema = ema.state
    model.load_state_dict(ema)  # the weights that are saved are the ones checked
    health = training_health(model, initial, items, log_rows, cfg, dev, seed)
    config_dict = {
        "name": name, "in_channels": int(in_channels), "bapg_channels": int(bapg_channels),
        "num_classes": len(labels), "labels": list(labels), "model": model_cfg, "fusion": fusion_cfg,
        "train": {k: v for k, v in cfg.items() if k not in ("model", "fusion")},
        "max_seq_len": int(cfg["max_seq_len"]), "seed": int(seed), "time_grid": grid,
        "input_length": None if cfg["input_length"] is None else int(cfg["input_length"]),
        "class_agnostic": bool(cfg["class_agnostic"]),
        "weights": "ema_last_epoch", "ema": f"decay min({cfg['ema_decay']}, (1+n)/(10+n)) at update n",
        "iterations": step, "device": str(dev), "health": health,
    }
    if bapg_channels:
        config_dict["fusion_norm"] = model.fusion_norm()
    state = {k: v.detach().cpu().clone() for k, v in ema.items()}
    return state, config_dict, log_rows
