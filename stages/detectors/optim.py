"""The recipe-shaped parts of detector training: optimizer parameter groups (weight-decay exemption), the lr
schedule (warm-up + cosine to lr_min, or step decay) and fixed training windows (TadTR's / AFSD's slices).

Each defaults to what training did before recipes had them (decay on every parameter, cosine to 0, one random
crop per video), so the small recipes are unchanged.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from tal_pipeline.stages.detectors.data import VideoItem, crop_item


def decays(name: str, param) -> bool:
    """Whether a parameter gets weight decay under the references' rule (ActionFormer's make_optimizer): only the
    weights of linear and convolution layers (>= 2 dimensions); biases, norm weights and LayerScale / Scale
    vectors (<= 1 dimension) are exempt."""
    return param.ndim >= 2 and not name.endswith("bias")


def parameter_groups(model, weight_decay: float, exempt: bool, groups: list[dict] | None = None) -> list[dict]:
    """AdamW parameter groups: each of `groups` ({"params", "lr_scale"}; None: one group of every parameter at
    lr_scale 1) with weight_decay, split in two when `exempt` (the exempt parameters at weight decay 0)."""
    if groups is None:
        groups = [{"params": list(model.parameters()), "lr_scale": 1.0}]
    if not exempt:
        return [{**g, "weight_decay": weight_decay} for g in groups]
    names = {id(p): n for n, p in model.named_parameters()}
    out = []
    for g in groups:
        params = list(g["params"])
        for wd, keep in ((weight_decay, True), (0.0, False)):
            chosen = [p for p in params if decays(names.get(id(p), ""), p) == keep]
            if chosen:
                out.append({**g, "params": chosen, "weight_decay": wd})
    return out


def learning_rate(step: int, total: int, warmup: int, cfg: Mapping, per_epoch: int) -> float:
    """lr at optimizer step `step` of `total`: linear warm-up over `warmup` steps, then cosine from cfg["lr"] to
    cfg["lr_min"] (LinearWarmupCosineAnnealingLR's eta_min) or, with cfg["lr_steps"] a list of epochs, cfg["lr"]
    times lr_gamma per step epoch passed (MultiStepLR; [] keeps it constant)."""
    base, lr_min = float(cfg["lr"]), float(cfg.get("lr_min", 0.0))
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    if cfg.get("lr_steps") is not None:
        passed = sum(step >= int(e) * per_epoch for e in cfg["lr_steps"])
        return base * float(cfg.get("lr_gamma", 0.1)) ** passed
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return lr_min + (base - lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


def slice_items(items: list[VideoItem], length: int, overlap: float) -> list[VideoItem]:
    """Every video cut into windows of `length` steps overlapping by `overlap` (the last flush with the end), each
    a training item; windows without an action are dropped (TadTR's ignore_empty), a video shorter than `length`
    is one window."""
    if not 0 <= overlap < 1:
        raise ValueError(f"slice_overlap must be in [0, 1), got {overlap}")
    hop = max(1, int(round(length * (1.0 - overlap))))
    out = []
    for it in items:
        t = it.features.shape[0]
        size = min(t, length)
        starts = list(range(0, t - size + 1, hop))
        if starts[-1] + size < t:
            starts.append(t - size)
        for s0 in starts:
            feats, segs, labels = crop_item(it, s0, size)
            if segs.shape[0]:
                out.append(VideoItem(f"{it.video}@{s0}", feats, segs, labels))
    if not out:
        raise ValueError(f"no training window of {length} steps holds an action")
    return out


def check_schedule(name: str, cfg: Mapping) -> None:
    """ValueError naming the detector unless the recipe-shaped settings are well formed."""
    if cfg["lr_steps"] is not None and (isinstance(cfg["lr_steps"], (str, bytes)) or
                                        any(int(e) != e or e < 0 for e in cfg["lr_steps"])):
        raise ValueError(f"detector {name!r}: lr_steps must be null or a list of epochs, got {cfg['lr_steps']!r}")
    if cfg["slice_overlap"] is not None and not 0 <= float(cfg["slice_overlap"]) < 1:
        raise ValueError(f"detector {name!r}: slice_overlap must be null or in [0, 1), got {cfg['slice_overlap']}")
    if not isinstance(cfg["decay_exempt"], bool):
        raise ValueError(f"detector {name!r}: decay_exempt must be true or false, got {cfg['decay_exempt']!r}")
    if cfg["inference_len"] is not None and (isinstance(cfg["inference_len"], bool) or
                                             int(cfg["inference_len"]) != cfg["inference_len"] or
                                             cfg["inference_len"] < 1):
        raise ValueError(f"detector {name!r}: inference_len must be null or a whole number >= 1, got "
                         f"{cfg['inference_len']}")
    if not np.isfinite(float(cfg["lr_min"])) or float(cfg["lr_min"]) < 0:
        raise ValueError(f"detector {name!r}: lr_min must be >= 0, got {cfg['lr_min']}")
