"""Detector training and inference on per-video feature sequences (pure functions; the luigi tasks wrap them).

Units: detectors work in continuous feature-step coordinates where feature i is centred at index i.
Seconds map to steps only through `stages.timegrid.seconds_to_feature` and back only through its exact
inverse `feature_to_seconds`, so a predicted step interval [a, b] covers the time from the centre
time of (fractional) feature a to that of feature b, and a perfect prediction of a ground truth gives
back its seconds exactly.

Checkpoint = (model_state: dict[str, Tensor], config_dict: JSON-able dict); both load with
torch.load(..., weights_only=True). Model selection never looks at a test split: train_detector returns
the EMA weights after the last epoch.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from pipeline.stages.timegrid import feature_to_seconds, seconds_to_feature

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
    # +BAPG: the fusion's learning rate relative to the detector's (the fusion starts at zero, models/fusion.py).
    # Chosen on held-out training videos (benchmarks/bench_detector_recipe.py --use-bapg, 2 folds x 2 seeds):
    # ActionFormer + BAPG 60.7 (1.0), 73.8 (1.0 with input dropout 0.5), 78.5 (0.1); AFSD + BAPG 58.0, 55.8, 59.3.
    "fusion_lr_scale": 0.1,
}
# Per-detector recipes. ActionFormer follows the published THUMOS14 recipe (AdamW, weight decay 0.05, 5 warm-up
# epochs then cosine, always a random 90-100 % crop) except for lr and length, chosen on held-out training
# videos of the default synthetic run (benchmarks/bench_detector_recipe.py, 2 folds x 3 seeds), never on the
# test split: held-out average mAP 59.6 (lr 1e-4, 80 epochs), 73.6 (5e-4), 76.8 (1e-3), 57.5 (2e-3),
# 83.3 (1e-3, 160 epochs); the reference's lr 1e-4 is for ~3500 iterations, a small dataset gets a few hundred.
DETECTOR_TRAIN: dict[str, dict[str, Any]] = {
    "actionformer": {"epochs": 160, "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 5, "crop_ratio": [0.9, 1.0]},
}
TRAIN_KEYS = frozenset(DEFAULT_TRAIN)


def resolve_train_config(name: str, config: Mapping | None = None) -> dict[str, Any]:
    """Training settings of detector `name`: given values over its recipe over DEFAULT_TRAIN (unknown keys refused).

    config may also hold "model" (detector options) and "fusion" (BAPG fusion options); they are passed through.
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
            raise ValueError(f"detector {name!r}: crop_ratio must be [lo, hi] with 0 < lo <= hi <= 1, got {cfg['crop_ratio']}")
        cfg["crop_ratio"] = [lo, hi]
    for key in ("epochs", "batch_size", "max_seq_len"):
        if int(cfg[key]) != cfg[key] or cfg[key] < (0 if key == "epochs" else 1):
            raise ValueError(f"detector {name!r}: {key} must be a whole number >= {0 if key == 'epochs' else 1}, "
                             f"got {cfg[key]}")
    return {**cfg, "model": nested.get("model", {}), "fusion": nested.get("fusion", {})}


@dataclass
class VideoItem:
    """One training video: features (T, C) float32, ground truth (M, 2) float32 in feature steps, labels (M,) int64."""
    video: str
    features: np.ndarray
    segments: np.ndarray
    labels: np.ndarray


def video_grid(time_grid: Mapping, video: str) -> tuple[float, int, int]:
    """(fps, window, stride) for a video: time_grid is one {"fps","window","stride"} or {video: that}."""
    g = time_grid if "fps" in time_grid else time_grid.get(video)
    if g is None:
        raise ValueError(f"video {video!r}: no time grid (fps, window, stride) given for it")
    try:
        return float(g["fps"]), int(g["window"]), int(g["stride"])
    except KeyError as exc:
        raise ValueError(f"video {video!r}: time grid lacks {exc.args[0]!r} (needs fps, window, stride)") from None


def _check_features(video: str, arr: np.ndarray, in_channels: int | None = None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"video {video!r}: features must be (T, C) with T >= 1, got shape {arr.shape}")
    if in_channels is not None and arr.shape[1] != in_channels:
        raise ValueError(f"video {video!r}: features have {arr.shape[1]} channels, the detector expects {in_channels}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"video {video!r}: features contain NaN or inf")
    return arr


def build_training_set(features: Mapping[str, np.ndarray], annotations, labels: list[str],
                       time_grid: Mapping) -> list[VideoItem]:
    """Videos of `features` (dict video -> (T, C)) with their annotations (DataFrame: video, label, start, end in
    seconds) converted to feature steps. Videos without annotations are all background; annotations of videos
    without features are ignored (another split)."""
    if not features:
        raise ValueError("no feature sequences given for training")
    index = {name: i for i, name in enumerate(labels)}
    missing = {"video", "label", "start", "end"} - set(annotations.columns)
    if missing:
        raise ValueError(f"annotations lack columns {sorted(missing)}")
    by_video = {v: df for v, df in annotations.groupby("video", sort=False)}
    channels = None
    items = []
    for video in sorted(features):
        arr = _check_features(video, features[video], channels)
        channels = arr.shape[1]
        df = by_video.get(video)
        segs = np.zeros((0, 2), np.float32)
        labs = np.zeros((0,), np.int64)
        if df is not None and len(df):
            unknown = sorted(set(df["label"]) - set(index))
            if unknown:
                raise ValueError(f"video {video!r}: labels {unknown} are not in the class list")
            start, end = df["start"].to_numpy(np.float64), df["end"].to_numpy(np.float64)
            bad = ~(end > start)
            if bad.any():
                raise ValueError(f"video {video!r}: annotation with end <= start at start={start[bad][0]}s")
            fps, window, stride = video_grid(time_grid, video)
            segs = np.stack([seconds_to_feature(start, fps, window, stride),
                             seconds_to_feature(end, fps, window, stride)], axis=1).astype(np.float32)
            labs = np.array([index[x] for x in df["label"]], np.int64)
        items.append(VideoItem(video, arr, segs, labs))
    return items


def crop_item(item: VideoItem, s0: int, length: int, trunc_thresh: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps [s0, s0 + length) of a video: features (L, C), segments (M', 2) relative to the crop, labels (M',).

    Segments are clipped to the crop (the crop edge becomes their boundary); a clipped segment is kept when at
    least half a step and at least trunc_thresh of its length remain.
    """
    lo, hi = s0 - 0.5, s0 + length - 0.5  # the crop's continuous span
    segs = item.segments
    clipped = np.stack([np.maximum(segs[:, 0], lo), np.minimum(segs[:, 1], hi)], 1)  # (M, 2)
    kept = clipped[:, 1] - clipped[:, 0]
    full = np.maximum(segs[:, 1] - segs[:, 0], 1e-6)
    keep = (kept >= 0.5) & (kept >= trunc_thresh * full - 1e-6)
    return item.features[s0:s0 + length], (clipped[keep] - s0).astype(np.float32), item.labels[keep]


def random_crop(item: VideoItem, max_seq_len: int, rng: np.random.Generator, tries: int = 10,
                crop_ratio: tuple[float, float] | None = None, trunc_thresh: float = 0.0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random window of a video (see crop_item): features (L, C), segments (M', 2) relative to it, labels (M',).

    Its length is a random share in crop_ratio of the video (None: the whole video), then at most max_seq_len.
    A crop that holds part of an action is preferred (up to `tries` draws).
    """
    t = item.features.shape[0]
    length = t if crop_ratio is None else max(1, int(round(t * rng.uniform(*crop_ratio))))
    length = min(length, max_seq_len)
    if length >= t:
        return item.features, item.segments, item.labels
    for _ in range(max(tries, 1)):
        s0 = int(rng.integers(0, t - length + 1))
        crop = crop_item(item, s0, length, trunc_thresh)
        if crop[1].shape[0] or item.segments.shape[0] == 0:
            break
    return crop


def collate(batch: list[tuple[np.ndarray, np.ndarray, np.ndarray]], device):
    """[(features (L_i, C), segments, labels)] -> x (B, C, L) float32, mask (B, L) bool, targets list."""
    import torch

    length = max(f.shape[0] for f, _, _ in batch)
    x = torch.zeros(len(batch), batch[0][0].shape[1], length)
    mask = torch.zeros(len(batch), length, dtype=torch.bool)
    targets = []
    for i, (f, s, lab) in enumerate(batch):
        x[i, :, :f.shape[0]] = torch.from_numpy(np.ascontiguousarray(f.T))
        mask[i, :f.shape[0]] = True
        targets.append({"segments": torch.from_numpy(np.asarray(s, np.float32)).to(device),
                        "labels": torch.from_numpy(np.asarray(lab, np.int64)).to(device)})
    return x.to(device), mask.to(device), targets


def resolve_device(device: str = "auto"):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def lr_at(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def ema_decay_at(n: int, decay: float) -> float:
    """Warm-up EMA decay min(d, (1+n)/(10+n)) at update n (DESIGN 3.5): a fixed 0.999 over a few hundred
    updates would leave the average mostly made of the random initial weights."""
    return min(decay, (1.0 + n) / (10.0 + n))


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def bapg_statistics(items: list[VideoItem], bapg_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (K,) of the last bapg_channels channels over every step of the training videos."""
    total = sum(it.features.shape[0] for it in items)
    acc = np.zeros(bapg_channels)
    acc2 = np.zeros(bapg_channels)
    for it in items:
        b = it.features[:, -bapg_channels:].astype(np.float64)  # (T, K)
        acc += b.sum(0)
        acc2 += (b * b).sum(0)
    mean = acc / total
    return mean.astype(np.float32), np.sqrt(np.maximum(acc2 / total - mean * mean, 0.0)).astype(np.float32)


def _windows(item: VideoItem, max_seq_len: int):
    """One training video whole, in windows of at most max_seq_len steps: [(features, segments, labels)]."""
    size = min(item.features.shape[0], int(max_seq_len))
    return [crop_item(item, s0, size) for s0 in window_starts(item.features.shape[0], size)]


def training_health(model, initial_state: Mapping, items: list[VideoItem], log_rows: list[dict], cfg: Mapping,
                    dev, seed: int = 0) -> dict:
    """The post-training health check: a run is flagged (never dropped) when its regression branch has
    collapsed on the foreground or training did not lower its loss.

    positive_share: over the training videos (whole, in windows of max_seq_len), the share of foreground
    locations whose predicted start and end distances are both positive (the model's regression_health).
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
    with torch.no_grad():
        for x, mask, targets in batches:
            h = model.regression_health(model(x, mask), targets)
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
                              "loss_first_epoch": None, "loss_last_epoch": None, "epochs": len(epochs), "problems": []}
    if epochs:
        health["loss_first_epoch"] = float(np.mean([r["total"] for r in log_rows if r["epoch"] == epochs[0]]))
        health["loss_last_epoch"] = float(np.mean([r["total"] for r in log_rows if r["epoch"] == epochs[-1]]))
        if health["positive_share"] is not None and health["positive_share"] < cfg["health_min_positive_share"]:
            health["problems"].append(f"regression branch collapsed: predicted distances positive at only "
                                      f"{100 * health['positive_share']:.1f} % of foreground locations (needs >= "
                                      f"{100 * cfg['health_min_positive_share']:.0f} %)")
        if not np.isfinite(health["loss_ratio"]) or health["loss_ratio"] > cfg["health_max_loss_ratio"]:
            health["problems"].append(f"loss did not fall: {loss_trained:.4g} with the trained weights vs "
                                      f"{loss_initial:.4g} with the initial ones on the training videos (ratio "
                                      f"{health['loss_ratio']:.2f} > {cfg['health_max_loss_ratio']})")
    # An untrained run (the report's sanity floor) has nothing to check: healthy is None, not False.
    health["healthy"] = (not health["problems"]) if epochs else None
    if not epochs:
        health["note"] = "not trained (0 epochs): not checked"
    return health


def train_detector(name: str, features: Mapping[str, np.ndarray], annotations, labels: list[str],
                   time_grid: Mapping, config: Mapping | None = None, seed: int = 0, device: str = "auto",
                   progress: bool = True, bapg_channels: int = 0, on_epoch=None) -> tuple[dict, dict, list[dict]]:
    """Train detector `name` on all videos of `features`; returns (model_state, config_dict, log_rows).

    config: training settings (DEFAULT_TRAIN keys) plus "model" (detector options) and "fusion" (BAPG fusion
    options); see resolve_train_config. bapg_channels > 0: the last bapg_channels of every feature array are
    BAPG channels, standardised with this training split's statistics and fused by models.fusion.BAPGFusion.
    model_state: EMA weights after the last epoch (dict of CPU tensors). config_dict: JSON-able, with the fully
    resolved model, fusion and training settings and the health check (config_dict["health"]), enough for
    `detect`. log_rows: one dict per iteration with epoch, iteration, lr and every loss term.
    on_epoch(epoch_done, epochs): called after every epoch (progress reporting).
    """
    import sys

    import torch
    from tqdm import tqdm

    from pipeline.models.detector_registry import build_detector, resolve_fusion_config, resolve_model_config

    cfg = resolve_train_config(name, config)
    model_cfg = resolve_model_config(name, cfg["model"])
    fusion_cfg = resolve_fusion_config(cfg["fusion"]) if bapg_channels else None
    if not labels:
        raise ValueError("empty class list")
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    dev = resolve_device(device)
    items = build_training_set(features, annotations, labels, time_grid)
    in_channels = items[0].features.shape[1]
    model = build_detector(name, in_channels, len(labels), bapg_channels=bapg_channels, fusion=fusion_cfg,
                           **model_cfg)
    if bapg_channels:
        model.set_bapg_statistics(*bapg_statistics(items, bapg_channels))
    model = model.to(dev)
    model.train()
    fusion_params = model.fusion_parameters() if bapg_channels else []
    fusion_ids = {id(p) for p in fusion_params}
    groups = [{"params": [p for p in model.parameters() if id(p) not in fusion_ids], "lr_scale": 1.0}]
    if fusion_params:
        groups.append({"params": fusion_params, "lr_scale": float(cfg["fusion_lr_scale"])})
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    per_epoch = math.ceil(len(items) / cfg["batch_size"])
    total = per_epoch * cfg["epochs"]
    warmup = per_epoch * cfg["warmup_epochs"]
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    initial = {k: v.detach().clone() for k, v in ema.items()}  # for the health check's loss comparison
    log_rows: list[dict] = []
    step = 0
    # A bar only on a terminal: in a log file every refresh would be one more line.
    bar = tqdm(total=total, desc=f"train {name}", disable=not (progress and sys.stderr.isatty()), leave=False)
    for epoch in range(cfg["epochs"]):
        order = rng.permutation(len(items))
        for i in range(per_epoch):
            batch = [random_crop(items[j], cfg["max_seq_len"], rng, cfg["crop_tries"], cfg["crop_ratio"],
                                 cfg["trunc_thresh"] if cfg["crop_ratio"] is not None else 0.0)
                     for j in order[i * cfg["batch_size"]:(i + 1) * cfg["batch_size"]]]
            x, mask, targets = collate(batch, dev)
            lr = lr_at(step, total, warmup, cfg["lr"])
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_scale"]
            losses = model.loss(model(x, mask), targets)
            if not torch.isfinite(losses["total"]):
                raise FloatingPointError(f"detector {name}: non-finite loss at epoch {epoch}, iteration {step}: "
                                         f"{ {k: float(v) for k, v in losses.items()} }")
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            if cfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            opt.step()
            d = ema_decay_at(step, cfg["ema_decay"])
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
                    else:
                        ema[k].copy_(v)
            log_rows.append({"epoch": epoch, "iteration": step, "lr": lr,
                             **{k: float(v.detach()) for k, v in losses.items()}})
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{log_rows[-1]['total']:.3f}")
        if on_epoch is not None:
            on_epoch(epoch + 1, cfg["epochs"])
    bar.close()
    model.load_state_dict(ema)  # the weights that are saved are the ones checked
    health = training_health(model, initial, items, log_rows, cfg, dev, seed)
    grid = ({k: time_grid[k] for k in ("fps", "window", "stride")} if "fps" in time_grid else None)
    config_dict = {
        "name": name, "in_channels": int(in_channels), "bapg_channels": int(bapg_channels),
        "num_classes": len(labels), "labels": list(labels), "model": model_cfg, "fusion": fusion_cfg,
        "train": {k: v for k, v in cfg.items() if k not in ("model", "fusion")},
        "max_seq_len": int(cfg["max_seq_len"]), "seed": int(seed), "time_grid": grid,
        "weights": "ema_last_epoch", "ema": f"decay min({cfg['ema_decay']}, (1+n)/(10+n)) at update n",
        "iterations": step, "device": str(dev), "health": health,
    }
    if bapg_channels:
        config_dict["fusion_norm"] = model.fusion_norm()
    state = {k: v.detach().cpu().clone() for k, v in ema.items()}
    return state, config_dict, log_rows


def window_starts(length: int, window: int) -> list[int]:
    """Starts of windows of `window` steps, half overlapping, the last one flush with the end: cover [0, length)."""
    if length <= window:
        return [0]
    hop = max(window // 2, 1)
    starts = list(range(0, length - window + 1, hop))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def load_detector(model_state: Mapping, config_dict: Mapping, device: str = "auto"):
    """Rebuild the detector of a checkpoint (strict weight loading) on `device`, in eval mode."""
    from pipeline.models.detector_registry import build_detector

    dev = resolve_device(device)
    # The recorded options are complete (resolve_model_config at training time): today's defaults do not matter.
    model = build_detector(config_dict["name"], int(config_dict["in_channels"]), int(config_dict["num_classes"]),
                           bapg_channels=int(config_dict.get("bapg_channels", 0)), fusion=config_dict.get("fusion"),
                           **dict(config_dict.get("model") or {}))
    model.load_state_dict(dict(model_state), strict=True)
    return model.to(dev).eval(), dev


def predict_video(model, dev, feats: np.ndarray, max_seq_len: int, max_dets: int):
    """Sliding-window detections of one video (T, C): segments (N, 2) steps, scores (N,), labels (N,) numpy.

    Windows overlap by half; each window keeps only detections whose centre lies in its own share of the
    video (between the midpoints to its neighbours' centres), so overlapping windows never duplicate.
    """
    import torch

    t = feats.shape[0]
    starts = window_starts(t, max_seq_len)
    size = min(t, max_seq_len)
    x = torch.zeros(len(starts), feats.shape[1], size)
    mask = torch.zeros(len(starts), size, dtype=torch.bool)
    for i, s in enumerate(starts):
        chunk = feats[s:s + size]
        x[i, :, :chunk.shape[0]] = torch.from_numpy(np.ascontiguousarray(chunk.T))
        mask[i, :chunk.shape[0]] = True
    with torch.no_grad():
        preds = model.predict(model(x.to(dev), mask.to(dev)), max_dets=max_dets)
    centres = [s + size / 2.0 for s in starts]
    segs, scores, labs = [], [], []
    for i, (s, (seg, sc, lab)) in enumerate(zip(starts, preds)):
        seg = seg.double().numpy() + s
        mid = seg.mean(axis=1)
        lo = -np.inf if i == 0 else 0.5 * (centres[i - 1] + centres[i])
        hi = np.inf if i == len(starts) - 1 else 0.5 * (centres[i] + centres[i + 1])
        own = (mid >= lo) & (mid < hi)
        segs.append(seg[own])
        scores.append(sc.double().numpy()[own])
        labs.append(lab.numpy()[own])
    segs, scores, labs = np.concatenate(segs), np.concatenate(scores), np.concatenate(labs)
    order = np.argsort(-scores, kind="stable")[:max_dets]
    return segs[order], scores[order], labs[order]


def detect(name: str, model_state: Mapping, config_dict: Mapping, features: Mapping[str, np.ndarray],
           labels: list[str], time_grid: Mapping, durations: Mapping[str, float], max_dets: int = 200,
           device: str = "auto") -> dict[str, list[dict]]:
    """Detections per video: [{"segment": [start_s, end_s], "label": class name, "score": float}], best first.

    Segments are clipped to [0, duration]; at most max_dets per video; a segment may carry several classes.
    """
    if config_dict.get("name") != name:
        raise ValueError(f"checkpoint is for detector {config_dict.get('name')!r}, not {name!r}")
    if len(labels) != int(config_dict["num_classes"]):
        raise ValueError(f"{len(labels)} class names given, the checkpoint has {config_dict['num_classes']} classes")
    model, dev = load_detector(model_state, config_dict, device)
    max_seq_len = int(config_dict.get("max_seq_len", DEFAULT_TRAIN["max_seq_len"]))
    out: dict[str, list[dict]] = {}
    for video in sorted(features):
        feats = _check_features(video, features[video], int(config_dict["in_channels"]))
        if video not in durations:
            raise ValueError(f"video {video!r}: no duration given")
        duration = float(durations[video])
        fps, window, stride = video_grid(time_grid, video)
        segs, scores, labs = predict_video(model, dev, feats, max_seq_len, max_dets)
        sec = np.clip(feature_to_seconds(segs, fps, window, stride), 0.0, duration)  # (N, 2)
        keep = sec[:, 1] > sec[:, 0]
        out[video] = [{"segment": [float(a), float(b)], "label": labels[int(c)], "score": float(s)}
                      for (a, b), s, c in zip(sec[keep], scores[keep], labs[keep])]
    return out


def synthetic_feature_dataset(num_videos: int = 16, channels: int = 1024, num_classes: int = 4, seed: int = 0,
                              min_len: int = 120, max_len: int = 250, noise: float = 0.5, signal: float = 1.5,
                              fps: float = 10.0, window: int = 4, stride: int = 2):
    """Feature sequences where each class is a fixed random direction added to the noise inside its actions.

    For tests and benchmarks. Returns (features {video: (T, C) float32}, annotations DataFrame (video, label,
    start, end seconds; an action over steps [a, b] spans their centre times +- half a step), labels,
    time_grid, durations {video: seconds}).
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(seed + 1000).normal(size=(num_classes, channels)).astype(np.float32) * signal
    labels = [f"class{k}" for k in range(num_classes)]
    grid = {"fps": float(fps), "window": int(window), "stride": int(stride)}
    half = 0.5 * stride / fps
    feats, rows, durations = {}, [], {}
    for v in range(num_videos):
        name = f"synthetic_{v:03d}"
        t = int(rng.integers(min_len, max_len + 1))
        f = rng.normal(size=(t, channels)).astype(np.float32) * noise
        pos = int(rng.integers(2, 10))
        while True:
            length = int(rng.integers(5, max(6, min(40, t // 3))))
            if pos + length >= t - 2:
                break
            k = int(rng.integers(num_classes))
            f[pos:pos + length] += patterns[k]
            start = float(feature_to_seconds(pos, fps, window, stride)) - half
            end = float(feature_to_seconds(pos + length - 1, fps, window, stride)) + half
            rows.append({"video": name, "label": labels[k], "start": start, "end": end})
            pos += length + int(rng.integers(4, 15))
        feats[name] = f
        durations[name] = float(feature_to_seconds(t - 1, fps, window, stride)) + window / (2.0 * fps)
    return feats, pd.DataFrame(rows, columns=["video", "label", "start", "end"]), labels, grid, durations
