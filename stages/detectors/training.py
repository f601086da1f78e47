"""Detector training: the training settings (DEFAULT_TRAIN; the named recipes are in stages.detectors.recipes), the
training loop (AdamW, warm-up + cosine lr, EMA weights) and the post-training health check (pure functions; the
TrainDetector task wraps them).

Checkpoint = (model_state: dict[str, Tensor], config_dict: JSON-able dict); both load with
torch.load(..., weights_only=True). Model selection never looks at a test split: train_detector returns
the EMA weights after the last epoch.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tal_pipeline.stages.bapg.calibration import calibrate_videos
from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.stages.detectors.data import (
    bapg_statistics,
    build_training_set,
    collate,
    epoch_batches,
    random_crop,
)
from tal_pipeline.stages.detectors.health import training_health
from tal_pipeline.stages.detectors.optim import check_schedule, learning_rate, parameter_groups, slice_items
from tal_pipeline.stages.detectors.recipes import SMALL_TRAIN
from tal_pipeline.stages.loss_log import LossLog
from tal_pipeline.stages.precision import DEFAULT_PRECISION, as_fp32, autocast, check_precision
from tal_pipeline.stages.runtime import (
    TrainingProgress,
    WeightAverage,
    deterministic_mode,
    ema_decay_at,
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
    # Recipe-shaped settings (stages.detectors.optim; the published recipes set them, stages.detectors.recipes):
    # no weight decay on biases / norms / scales; cosine to lr_min, or step decay at the epochs lr_steps by
    # lr_gamma ([]: constant lr); every window of slice_overlap of each video as an item (None: one random crop
    # per video); detection windows of inference_len steps (None: max_seq_len).
    "decay_exempt": False,
    "lr_min": 0.0,
    "lr_steps": None,
    "lr_gamma": 0.1,
    "slice_overlap": None,
    "inference_len": None,
    # fp32 | bf16: the forward pass of training and of detection under bf16 autocast (stages.precision).
    "precision": DEFAULT_PRECISION,
}
# The one class of a class-agnostic detector.
FOREGROUND = "action"
# The small-data recipes live with the published ones (stages.detectors.recipes).
DETECTOR_TRAIN = SMALL_TRAIN
TRAIN_KEYS = frozenset(DEFAULT_TRAIN)


def resolve_train_config(name: str, config: Mapping | None = None) -> dict[str, Any]:
    """Training settings of detector `name`: given values over its recipe over DEFAULT_TRAIN (unknown keys refused).

    config may also hold "model" (detector options) and "fusion" (BAPG fusion settings); they are passed through
    unresolved (train_detector resolves them, once).
    """
    config = dict(config or {})
    nested = {k: dict(config.pop(k) or {}) for k in ("model", "fusion") if k in config}
    unknown = sorted(set(config) - TRAIN_KEYS)
    if unknown:
        raise ValueError(f"detector {name!r}: unknown training setting(s) {unknown}; known: {sorted(TRAIN_KEYS)}")
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
    check_schedule(name, cfg)
    return {**cfg, "model": nested.get("model", {}), "fusion": nested.get("fusion", {})}


def _train_loop(model, opt, ema, items, lengths, cfg, dev, rng, schedule: tuple[int, int, int], log: LossLog
                ) -> int:
    """The epochs of training: the forward pass under the precision's autocast, the loss in fp32 on its fp32
    outputs, the loss terms and the gradient norm kept on the device (LossLog: copied out every LOG_EVERY steps,
    and at every epoch's end for on_log). schedule: (total, warmup, per_epoch) steps. Returns the steps."""
    import torch

    total, warmup, per_epoch = schedule
    # what the gradient clipping sees: every parameter, but with a gated fusion only the detector's (models.fusion)
    clipped = list(model.clipped_parameters() if hasattr(model, "clipped_parameters") else model.parameters())
    step = 0
    for epoch in range(cfg["epochs"]):
        for batch_videos in epoch_batches(lengths, cfg["batch_size"], int(cfg["length_bucket"]), rng):
            batch = [random_crop(items[j], cfg["max_seq_len"], rng, cfg["crop_tries"], cfg["crop_ratio"],
                                 cfg["trunc_thresh"] if cfg["crop_ratio"] is not None else 0.0)
                     for j in batch_videos]
            x, mask, targets = collate(batch, dev)
            lr = learning_rate(step, total, warmup, cfg, per_epoch)
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_scale"]
            with autocast(dev, cfg["precision"]):
                outputs = model(x, mask)
            losses = model.loss(as_fp32(outputs), targets)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            # the total norm before clipping (no clipping: max_norm inf scales the gradients by exactly 1)
            grad_norm = torch.nn.utils.clip_grad_norm_(clipped, cfg["grad_clip"] or math.inf)
            opt.step()
            decay = ema_decay_at(step, cfg["ema_decay"])
            ema.update(decay)
            log.add({"epoch": epoch, "iteration": step, "lr": lr, "ema_decay": decay},
                    {**losses, "grad_norm": grad_norm})
            step += 1
        log.epoch_done(epoch)
    log.flush()
    return step


def train_detector(name: str, features: Mapping[str, np.ndarray], annotations, labels: list[str],
                   time_grid: TimeGrid | Mapping[str, TimeGrid], config: Mapping | None = None, seed: int = 0,
                   device: str = "auto", progress: bool = True, bapg_channels: int = 0, on_epoch=None,
                   on_log=None, deterministic: bool = False) -> tuple[dict, dict, list[dict]]:
    """Train detector `name` on all videos of `features`; returns (model_state, config_dict, log_rows).

    config: training settings (DEFAULT_TRAIN keys) plus "model" (detector options) and "fusion" (BAPG fusion
    settings, lr_scale included); see resolve_train_config. Both are resolved here, once, and built as resolved.
    bapg_channels > 0: the last bapg_channels of every feature array are BAPG channels, standardised with this
    training split's statistics and fused by models.fusion.BAPGFusion.
    model_state: EMA weights after the last epoch (dict of CPU tensors). config_dict: JSON-able, with the fully
    resolved model, fusion and training settings and the health check (config_dict["health"]), enough for
    `detect`. log_rows: one dict per iteration with epoch, iteration, lr, every loss term, grad_norm (before
    clipping) and ema_decay. on_epoch(epoch_done, epochs): called after every epoch (progress reporting);
    on_log(log_rows): after every epoch too, with the rows so far (live logs: storage.training_board).
    deterministic: run under stages.runtime.deterministic_mode (a seeded CUDA run then repeats exactly; slower).
    """
    with deterministic_mode(deterministic):
        state, config_dict, log_rows = _train_detector(name, features, annotations, labels, time_grid, config, seed,
                                                       device, progress, bapg_channels, on_epoch, on_log)
    config_dict["deterministic"] = bool(deterministic)
    return state, config_dict, log_rows


def _training_items(features, annotations, labels: list[str], time_grid, cfg: Mapping) -> tuple[list, list[str]]:
    """The training items (stages.detectors.data.VideoItem) and the class list, as the settings shape them:
    class-agnostic (one FOREGROUND class), resized to input_length steps, sliced into fixed windows."""
    if not labels:
        raise ValueError("empty class list")
    if cfg["class_agnostic"]:  # one foreground class; config_dict["labels"] is [FOREGROUND]
        annotations = annotations.assign(label=FOREGROUND)
        labels = [FOREGROUND]
    if cfg["input_length"] is not None:
        from tal_pipeline.stages.detectors.resize import resize_videos

        features, time_grid = resize_videos(features, time_grid, int(cfg["input_length"]))
    items = build_training_set(features, annotations, labels, time_grid)
    if cfg["slice_overlap"] is not None:  # fixed windows, each an item (TadTR's / AFSD's training clips)
        items = slice_items(items, int(cfg["max_seq_len"]), float(cfg["slice_overlap"]))
    return items, labels


def _config_dict(name: str, model, cfg: Mapping, settings: tuple[dict, dict | None], labels: list[str],
                 in_channels: int, bapg_channels: int, grid: dict | None, seed: int, dev, steps: int, health: dict
                 ) -> dict:
    """What the checkpoint records: the fully resolved model, fusion and training settings, enough for `detect`."""
    model_cfg, fusion_cfg = settings
    config_dict = {
        "name": name, "in_channels": int(in_channels), "bapg_channels": int(bapg_channels),
        "num_classes": len(labels), "labels": list(labels), "model": model_cfg, "fusion": fusion_cfg,
        "train": {k: v for k, v in cfg.items() if k not in ("model", "fusion")},
        "max_seq_len": int(cfg["max_seq_len"]), "seed": int(seed), "time_grid": grid,
        "input_length": None if cfg["input_length"] is None else int(cfg["input_length"]),
        "class_agnostic": bool(cfg["class_agnostic"]),
        "weights": "ema_last_epoch", "ema": f"decay min({cfg['ema_decay']}, (1+n)/(10+n)) at update n",
        "iterations": steps, "device": str(dev), "health": health,
    }
    if bapg_channels:
        config_dict["fusion_norm"] = model.fusion_norm()
    return config_dict


def _train_detector(name, features, annotations, labels, time_grid, config, seed, device, progress, bapg_channels,
                    on_epoch, on_log) -> tuple[dict, dict, list[dict]]:
    import torch

    from tal_pipeline.models.detector_registry import build_detector, resolve_fusion_config, resolve_model_config

    cfg = resolve_train_config(name, config)
    model_cfg = resolve_model_config(name, cfg["model"])
    fusion_cfg = resolve_fusion_config(cfg["fusion"]) if bapg_channels else None
    grid = time_grid.to_attrs() if isinstance(time_grid, TimeGrid) else None  # one (native) grid for every video
    features = calibrate_videos(features, bapg_channels, fusion_cfg)  # whole videos, before crops and statistics
    items, labels = _training_items(features, annotations, labels, time_grid, cfg)
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    dev = resolve_device(device)
    in_channels = items[0].features.shape[1]
    model = build_detector(name, in_channels, len(labels), model_cfg, bapg_channels=bapg_channels, fusion=fusion_cfg)
    if bapg_channels:
        model.set_bapg_statistics(*bapg_statistics(items, bapg_channels))
    model = model.to(dev)
    model.train()
    # +BAPG: the fusion layers learn at the fusion settings' lr_scale (models.fusion.BAPGFusion.parameter_groups).
    groups = model.parameter_groups() if bapg_channels else None
    opt = torch.optim.AdamW(parameter_groups(model, cfg["weight_decay"], cfg["decay_exempt"], groups), lr=cfg["lr"])
    per_epoch = math.ceil(len(items) / cfg["batch_size"])
    lengths = np.array([it.features.shape[0] for it in items])
    ema = WeightAverage(model)
    initial = {k: v.detach().clone() for k, v in ema.state.items()}  # for the health check's loss comparison
    log_rows: list[dict] = []
    bar = TrainingProgress(per_epoch * cfg["epochs"], cfg["epochs"], f"train {name}", progress, on_epoch)
    step = _train_loop(model, opt, ema, items, lengths, cfg, dev, rng,
                       (per_epoch * cfg["epochs"], per_epoch * cfg["warmup_epochs"], per_epoch),
                       LossLog(log_rows, f"detector {name}", bar=bar, on_log=on_log))
    bar.close()
    model.load_state_dict(ema.state)  # the weights that are saved are the ones checked
    health = training_health(model, initial, items, log_rows, cfg, dev, seed)
    config_dict = _config_dict(name, model, cfg, (model_cfg, fusion_cfg), labels, in_channels, bapg_channels, grid,
                               seed, dev, step, health)
    state = {k: v.detach().cpu().clone() for k, v in ema.state.items()}
    return state, config_dict, log_rows
