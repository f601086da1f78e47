"""A video-level classifier for class-agnostic detections (the ActivityNet recipe): which classes a video shows,
from its features pooled over time (pure functions; the ClassifyVideos task wraps them).

Input of a video: the mean and the max over time of its (T, C) features, concatenated (2C), standardised with
the training videos' per-channel mean and std. Model: an MLP with one hidden layer (`hidden` > 0, ReLU, dropout)
or logistic regression (`hidden` 0), multi-label over the classes present in the training annotations: one sigmoid
per class, binary cross-entropy, full-batch AdamW. Its scores are per-class probabilities in [0, 1], what the top-2
fusion (stages.classification.video_scores) multiplies with a detection's score. The last epoch's weights are kept.

The defaults were chosen on held-out training videos of the ActivityNet-shaped benchmark, never its validation or
test videos (docs/method.md §11: the protocol and the figures).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

DEFAULT_CLASSIFIER: dict[str, Any] = {"hidden": 256, "epochs": 300, "lr": 0.01, "weight_decay": 0.1, "dropout": 0.5}


def pooled_features(features: np.ndarray, video: str = "video") -> np.ndarray:
    """(T, C) -> (2C,) float64: the mean over time, then the max over time."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"video {video!r}: features must be (T, C) with T >= 1, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"video {video!r}: features contain NaN or inf")
    return np.concatenate([x.mean(0), x.max(0)])


def _matrix(pooled: Mapping[str, np.ndarray], videos: list[str], width: int | None = None) -> np.ndarray:
    """(N, 2C) float64 of the videos' pooled features (pooled_features), checked 1-D and `width` wide."""
    rows = [np.asarray(pooled[v], dtype=np.float64) for v in videos]
    for v, r in zip(videos, rows):
        if r.ndim != 1 or (width is not None and r.shape[0] != width):
            raise ValueError(f"video {v!r}: pooled features of shape {r.shape}, the classifier expects "
                             f"({width if width is not None else '2C'},) (pooled_features of its (T, C) features)")
    return np.stack(rows)


def resolve_classifier_config(config: Mapping | None = None) -> dict[str, Any]:
    """Given values over DEFAULT_CLASSIFIER; unknown keys refused."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULT_CLASSIFIER))
    if unknown:
        raise ValueError(f"video classifier: unknown setting(s) {unknown}; known: {sorted(DEFAULT_CLASSIFIER)}")
    cfg = {**DEFAULT_CLASSIFIER, **config}
    for key in ("hidden", "epochs"):
        if isinstance(cfg[key], bool) or int(cfg[key]) != cfg[key] or cfg[key] < 0:
            raise ValueError(f"video classifier: {key} must be a whole number >= 0, got {cfg[key]!r}")
        cfg[key] = int(cfg[key])
    return cfg


def _build(in_features: int, num_classes: int, cfg: Mapping):
    from torch import nn

    if cfg["hidden"] == 0:
        return nn.Sequential(nn.Linear(in_features, num_classes))
    return nn.Sequential(nn.Linear(in_features, cfg["hidden"]), nn.ReLU(), nn.Dropout(cfg["dropout"]),
                         nn.Linear(cfg["hidden"], num_classes))


def train_video_classifier(pooled: Mapping[str, np.ndarray], video_labels: Mapping[str, list[str]],
                           config: Mapping | None = None, seed: int = 0) -> tuple[dict, dict]:
    """Train on every video of `video_labels` ({video: its class names}; a video without actions is all
    negatives); pooled: {video: pooled_features of its (T, C) features} (one vector per video, so a large
    dataset is pooled video by video, never held whole). Returns (state: dict of CPU tensors, config: JSON-able
    with "classes" (sorted, those present), "in_features", "mean", "std", the resolved settings and
    "train_top1")."""
    import torch

    from tal_pipeline.stages.runtime import seed_everything

    cfg = resolve_classifier_config(config)
    videos = sorted(video_labels)
    missing = [v for v in videos if v not in pooled]
    if missing:
        raise ValueError(f"video classifier: no features for training video(s) {missing[:5]}")
    classes = sorted({c for v in videos for c in video_labels[v]})
    if not classes:
        raise ValueError("video classifier: the training videos have no labelled action")
    index = {c: k for k, c in enumerate(classes)}
    x = _matrix(pooled, videos)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    y = np.zeros((len(videos), len(classes)), np.float32)
    for i, v in enumerate(videos):
        for c in video_labels[v]:
            y[i, index[c]] = 1.0
    seed_everything(seed)
    model = _build(x.shape[1], len(classes), cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    xt = torch.from_numpy(((x - mean) / std).astype(np.float32))
    yt = torch.from_numpy(y)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(cfg["epochs"]):
        loss = loss_fn(model(xt), yt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    out = {**cfg, "classes": classes, "in_features": int(x.shape[1]), "mean": mean.tolist(), "std": std.tolist(),
           "train_videos": len(videos), "seed": int(seed)}
    scores = video_class_scores(state, out, pooled, videos)
    out["train_top1"] = top1_accuracy(scores, {v: video_labels[v] for v in videos}, classes)
    return state, out


def video_class_scores(state: Mapping, config: Mapping, pooled: Mapping[str, np.ndarray],
                       videos: list[str] | None = None) -> dict[str, np.ndarray]:
    """{video: (K,) float64 class probabilities} in the order of config["classes"]; pooled: {video:
    pooled_features}."""
    import torch

    videos = sorted(pooled) if videos is None else list(videos)
    if not videos:
        return {}
    model = _build(int(config["in_features"]), len(config["classes"]), config)
    model.load_state_dict(dict(state), strict=True)
    model.eval()
    x = _matrix(pooled, videos, int(config["in_features"]))
    x = (x - np.asarray(config["mean"])) / np.asarray(config["std"])
    with torch.no_grad():
        p = torch.sigmoid(model(torch.from_numpy(x.astype(np.float32)))).double().numpy()
    return {v: p[i] for i, v in enumerate(videos)}


def top1_accuracy(scores: Mapping[str, np.ndarray], video_labels: Mapping[str, list[str]], classes: list[str]
                  ) -> float | None:
    """Share of the videos with at least one labelled action whose highest-scoring class is one of their labels
    (None when there is none)."""
    hits, total = 0, 0
    for video, labels in video_labels.items():
        if not labels or video not in scores:
            continue
        total += 1
        hits += classes[int(np.argmax(scores[video]))] in set(labels)
    return hits / total if total else None
