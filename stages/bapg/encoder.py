"""BAPG II-B: contrastive encoder training on the sample pools (stages.bapg.sample_pools), and embedding.

Training (II-B): each sample is an anchor and a positive from one instance and a hard negative from that
instance's hard pool (an easy negative of the same video if the instance has no hard negative; optionally an
easy negative as well). Default loss is the triplet margin loss, not eq. 3 as printed (see models/encoder.py).
Boundary options, off by default (stages/bapg/encoder_options.py): `context` (Phi sees a centred window of steps)
and `hard_negative_tau` (hard negatives near the instance's start / end drawn more often).

Checkpoint = (state: dict[str, Tensor] on CPU, config_dict: JSON-able); load with torch.load(..., weights_only=True).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from tal_pipeline.stages.bapg.encoder_options import context_windows, gather_windows, negative_weights
from tal_pipeline.stages.bapg.sample_pools import build_sample_pools
from tal_pipeline.stages.bapg.triplets import TripletSampler
from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.stages.loss_log import LossLog
from tal_pipeline.stages.precision import DEFAULT_PRECISION, autocast, check_precision
from tal_pipeline.stages.runtime import TrainingProgress, deterministic_mode, resolve_device, seed_everything

DEFAULT_ENCODER: dict[str, Any] = {
    "encoder": "mlp",            # "mlp" on per-step features (default) or "cnn" on uint8 frames (T, H, W, 3)
    "hidden": 256,
    "dim": 128,
    "width": 32,                 # cnn only: channels of the first conv
    "loss": "triplet",           # "triplet": [s(a,n) - s(a,p) + margin]_+ (deviation); "bapg": eq. 3 as printed
    "margin": 0.2,
    "gamma": 1.0,                # eq. 3's gamma (paper: 1, which disables the negative term; see models/encoder.py)
    "hard_negative_seconds": 2.0,
    "easy_negatives": False,     # also add a triplet with an easy negative of the same video to each sample
    # Boundary options (stages/bapg/encoder_options.py), off by default:
    "context": 0,                # mlp only: steps of the centred window Phi sees (odd >= 3; 0: the step alone)
    "hard_negative_tau": 0.0,    # > 0: draw hard negatives with probability ~ exp(-d / tau), d = seconds to the
                                 # instance's start / end (0: uniform over the hard pool)
    # Paper settings (III-A): Adam, weight decay 4e-4, multi-step decay, batch 112, n = 2 samples per class.
    # lr 1e-3 and 30 epochs (paper: 1e-5 x 100 epochs) because here Phi is a small MLP on fixed I3D features,
    # trained from scratch, not a pretrained ResNet-50 being fine-tuned on frames: 1e-5 barely moves it.
    "lr": 1e-3,
    "weight_decay": 4e-4,
    "lr_milestones": [0.6, 0.85],  # fractions of the epochs at which lr is multiplied by lr_decay
    "lr_decay": 0.1,
    "batch_size": 112,
    "per_class": 2,              # n: consecutive samples drawn per class visit when filling a batch
    "epochs": 30,
    "iterations_per_epoch": None,  # None: ceil(positive steps / batch_size), i.e. each positive is ~once an anchor
    # fp32 | bf16: Phi's forward pass (training and embedding) under bf16 autocast; similarities and the loss in
    # fp32 (stages.precision).
    "precision": DEFAULT_PRECISION,
}
# Frames per forward pass when the cnn encoder embeds a video (GroupNorm: the embedding of a frame does not depend on
# the batch; 64 frames of 224 px hold ~0.4 GB of first-layer activations).
FRAME_BATCH = 64
MODEL_KEYS = ("encoder", "hidden", "dim", "width", "context", "loss", "margin", "gamma")


# ----------------------------------------------------------------------------------------------- training

def _check_inputs(features: Mapping[str, np.ndarray], kind: str) -> tuple[int, ...]:
    """Common per-step input shape of all videos (without T); errors name the video."""
    from tal_pipeline.models.encoder import input_shape_ok

    if not features:
        raise ValueError("no feature sequences given for encoder training")
    shape = None
    for video in sorted(features):
        arr = features[video]
        if arr.ndim < 2 or arr.shape[0] < 1 or not input_shape_ok(kind, arr.shape[1:]):
            raise ValueError(f"video {video!r}: input shape {tuple(arr.shape)} does not suit the {kind} encoder "
                             f"(mlp: (T, C) features; cnn: (T, H, W, 3) frames)")
        if shape is not None and tuple(arr.shape[1:]) != shape:
            raise ValueError(f"video {video!r}: per-step shape {tuple(arr.shape[1:])} differs from {shape}")
        shape = tuple(arr.shape[1:])
        if kind == "mlp" and not np.isfinite(np.asarray(arr)).all():
            raise ValueError(f"video {video!r}: features contain NaN or inf")
    return shape


def multistep_lr(epoch: int, epochs: int, base_lr: float, milestones, decay: float) -> float:
    """Multi-step decay: base_lr * decay^(number of milestones, as fractions of `epochs`, already reached)."""
    passed = sum(epoch >= round(m * epochs) for m in milestones)
    return base_lr * decay ** passed


def _gather(arrays: list[np.ndarray], vids: np.ndarray, steps: np.ndarray, context: int = 0) -> np.ndarray:
    """Rows steps[i] of video vids[i] -> (N, ...) array (inputs may be zarr arrays or numpy); with context k the
    centred windows (N, k, C) (encoder_options.context_windows: edge steps repeated)."""
    if context:
        return gather_windows(arrays, vids, steps, context)
    return np.stack([np.asarray(arrays[v][s]) for v, s in zip(vids.tolist(), steps.tolist())])


def _train_epochs(model, opt, sampler: TripletSampler, arrays: list, cfg: Mapping, per_epoch: int, dev,
                  log: LossLog) -> int:
    """The epochs of training (Phi's forward pass under the precision's autocast, s and the loss in fp32); the
    logged values stay on the device until LossLog copies them out (and at every epoch's end for on_log). Returns
    the iterations."""
    import torch

    from tal_pipeline.models.encoder import contrastive_loss, hinge_active

    step = 0
    for epoch in range(cfg["epochs"]):
        lr = multistep_lr(epoch, cfg["epochs"], cfg["lr"], cfg["lr_milestones"], cfg["lr_decay"])
        for group in opt.param_groups:
            group["lr"] = lr
        for _ in range(per_epoch):
            b = sampler.batch(cfg["batch_size"])  # (B, 5)
            has_easy = b[:, 4] >= 0
            cols = [b[:, 1], b[:, 2], b[:, 3], b[has_easy, 4]]
            x = torch.from_numpy(_gather(arrays, np.concatenate([b[:, 0]] * 3 + [b[has_easy, 0]]),
                                         np.concatenate(cols), cfg["context"])).to(dev)  # (3B + E, ...)
            with autocast(dev, cfg["precision"]):
                z = model(x)  # (3B + E, D) unit vectors
            z = z.float()
            n = b.shape[0]
            za, zp, zn, ze = z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:]
            s_ap, s_an = (za * zp).sum(-1), (za * zn).sum(-1)  # eq. 2 on unit vectors: (B,)
            loss = contrastive_loss(cfg["loss"], s_ap, s_an, cfg["margin"], cfg["gamma"])
            active = hinge_active(cfg["loss"], s_ap.detach(), s_an.detach(), cfg["margin"], cfg["gamma"])
            terms = {"hinge_active": active.float().mean()}
            if ze.shape[0]:
                easy = torch.from_numpy(has_easy).to(dev)
                s_aen = (za[easy] * ze).sum(-1)  # (E,)
                loss = loss + contrastive_loss(cfg["loss"], s_ap[easy], s_aen, cfg["margin"], cfg["gamma"])
                terms["s_aen"] = s_aen.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
            opt.step()
            log.add({"epoch": epoch, "iteration": step, "lr": lr},
                    {**terms, "loss": loss, "s_ap": s_ap.mean(), "s_an": s_an.mean(), "grad_norm": grad_norm})
            step += 1
        log.epoch_done(epoch)
    log.flush()
    return step


def train_encoder(features: Mapping[str, np.ndarray], actions: pd.DataFrame,
                  time_grid: TimeGrid | Mapping[str, TimeGrid],
                  config: Mapping | None = None, seed: int = 0, device: str = "auto", progress: bool = True,
                  on_epoch=None, on_log=None, deterministic: bool = False) -> tuple[dict, dict, list[dict]]:
    """Train Phi on the videos of `features` ({video: (T, C) float features, or (T, H, W, 3) uint8 frames for the
    cnn encoder}) with pools from `actions` (DataFrame: video, label, start, end seconds[, ambiguous]).

    Returns (state: dict of CPU tensors, config_dict: JSON-able, enough for `load_encoder`, log_rows: one dict per
    iteration: epoch, iteration, lr, loss, s_ap, s_an[, s_aen], grad_norm). epochs = 0 returns the initial weights (the
    "untrained" baseline of the same seed). Batches are gathered row by row: pass in-memory numpy arrays
    (read zarr arrays with [:] first). on_epoch(epoch_done, epochs): called after every epoch (progress reporting);
    on_log(log_rows): after every epoch too, with the rows so far (live logs: storage.training_board).
    deterministic: under stages.runtime.deterministic_mode (a seeded CUDA run repeats exactly).
    """
    cfg = {**DEFAULT_ENCODER, **(dict(config) if config else {})}
    unknown = sorted(set(cfg) - set(DEFAULT_ENCODER))
    if unknown:
        raise ValueError(f"unknown encoder config keys {unknown}")
    check_precision(cfg["precision"], "encoder")
    with deterministic_mode(deterministic):
        return _train_encoder(features, actions, time_grid, cfg, seed, device, progress, on_epoch, on_log)


def _train_encoder(features, actions, time_grid, cfg: dict, seed: int, device, progress: bool, on_epoch, on_log
                   ) -> tuple[dict, dict, list[dict]]:
    import torch

    from tal_pipeline.models.encoder import build_encoder

    shape = _check_inputs(features, cfg["encoder"])
    pools = build_sample_pools(actions, time_grid, {v: len(features[v]) for v in features},
                               cfg["hard_negative_seconds"])
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    dev = resolve_device(device)
    in_channels = int(shape[0]) if cfg["encoder"] == "mlp" else None
    model = build_encoder(cfg["encoder"], in_channels, cfg["hidden"], cfg["dim"], cfg["width"],
                          cfg["context"]).to(dev)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    weights = negative_weights(pools.instances, time_grid, cfg["hard_negative_tau"])
    sampler = (TripletSampler(pools, rng, cfg["per_class"], cfg["easy_negatives"], weights)
               if cfg["epochs"] > 0 else None)
    arrays = [features[v] for v in sorted(features)]
    n_pos = pools.summary()["positive_steps"]
    per_epoch = int(cfg["iterations_per_epoch"] or max(1, math.ceil(n_pos / cfg["batch_size"])))
    log_rows: list[dict] = []
    bar = TrainingProgress(per_epoch * cfg["epochs"], cfg["epochs"], "train encoder", progress, on_epoch)
    step = _train_epochs(model, opt, sampler, arrays, cfg, per_epoch, dev,
                         LossLog(log_rows, "encoder", "loss", bar=bar, on_log=on_log))
    bar.close()
    train = {k: v for k, v in cfg.items() if k not in MODEL_KEYS}
    train["lr_milestones"] = [float(m) for m in cfg["lr_milestones"]]
    config_dict = {
        **{k: cfg[k] for k in MODEL_KEYS}, "in_channels": in_channels, "in_shape": [int(s) for s in shape],
        "train": train, "seed": int(seed), "device": str(dev), "iterations": step,
        "iterations_per_epoch": per_epoch, "pools": pools.summary(),
        "instances_without_negative": sampler.dropped if sampler else 0,
        "deviation": ("loss 'triplet' = [s(a,n) - s(a,p) + margin]_+ replaces eq. 3 "
                      "[s(a,n) - gamma]_+ - s(a,p), whose hinge never fires at gamma = 1 (cosine s <= 1)"
                      if cfg["loss"] == "triplet" else None),
    }
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return state, config_dict, log_rows


# ----------------------------------------------------------------------------------------------- inference

def load_encoder(state: Mapping, config_dict: Mapping, device: str = "auto"):
    """Rebuild Phi from a checkpoint (strict weight loading), on `device`, in eval mode."""
    from tal_pipeline.models.encoder import build_encoder

    model = build_encoder(config_dict["encoder"], config_dict["in_channels"], config_dict["hidden"],
                          config_dict["dim"], config_dict["width"], config_dict["context"])
    model.load_state_dict(dict(state), strict=True)
    return model.to(resolve_device(device)).eval()


def make_embedder(state: Mapping, config_dict: Mapping, device: str = "auto", batch: int = 4096
                  ) -> Callable[[np.ndarray], np.ndarray]:
    """Load once, embed many: returns f(inputs (T, ...)) -> (T, D) float32 unit-norm embeddings.

    A temporal-context encoder (config "context" = k) embeds step t from the window of the k steps centred on t
    of the whole video, the video's edge steps repeated past its ends: the same windows training uses
    (encoder_options.context_windows), so the embedding of a step does not depend on the batching."""
    import torch

    model = load_encoder(state, config_dict, device)
    dev = next(model.parameters()).device
    want = tuple(config_dict["in_shape"])
    context = int(config_dict["context"])

    frames = config_dict["encoder"] == "cnn"
    precision = config_dict["train"]["precision"]  # the training's

    def run(inputs: np.ndarray) -> np.ndarray:
        if tuple(inputs.shape[1:]) != want:
            hint = (" (the cnn encoder embeds one sampled frame per feature step, stages.data.frame_steps, not "
                    "features)" if frames and inputs.ndim == 2 else "")
            raise ValueError(f"encoder expects per-step shape {want}, got inputs of shape {tuple(inputs.shape)}"
                             + hint)
        out = np.empty((inputs.shape[0], int(config_dict["dim"])), np.float32)  # (T, D)
        step = max(1, batch // max(context, 1))  # steps per chunk: a chunk holds ~batch feature rows
        if frames:  # a frame's first feature map is ~(H/2 x W/2 x width) floats: a few frames per chunk suffice
            step = min(step, FRAME_BATCH)
        with torch.no_grad():
            for s in range(0, inputs.shape[0], step):
                rows = (context_windows(inputs, np.arange(s, min(s + step, inputs.shape[0])), context)
                        if context else inputs[s:s + step])  # (b, ...) or (b, k, C)
                x = torch.from_numpy(np.ascontiguousarray(rows)).to(dev)
                with autocast(dev, precision):
                    z = model(x)  # (b, D)
                out[s:s + step] = z.float().cpu().numpy()
        return out

    return run


def embed(state: Mapping, config_dict: Mapping, features: np.ndarray, device: str = "auto", batch: int = 4096
          ) -> np.ndarray:
    """Embeddings of one video: features (T, C) (or frames (T, H, W, 3)) -> (T, D) float32, unit norm rows."""
    return make_embedder(state, config_dict, device, batch)(features)
