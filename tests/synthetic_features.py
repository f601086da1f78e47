"""Synthetic detector features for tests and benchmarks (every class a fixed random direction added to the noise
inside its actions, annotations in seconds on the pipeline's time grid), and the overfit check both detectors'
tests run on them."""
from __future__ import annotations

import numpy as np

from tal_pipeline.stages.data.timegrid import TimeGrid, feature_to_seconds


def synthetic_feature_dataset(num_videos: int = 16, channels: int = 1024, num_classes: int = 4, seed: int = 0,
                              min_len: int = 120, max_len: int = 250, noise: float = 0.5, signal: float = 1.5,
                              fps: float = 10.0, window: int = 4, stride: int = 2):
    """Feature sequences where each class is a fixed random direction added to the noise inside its actions.

    For tests and benchmarks. Returns (features {video: (T, C) float32}, annotations DataFrame (video, label,
    start, end seconds; an action over steps [a, b] spans their centre times +- half a step), labels,
    time_grid (one TimeGrid), durations {video: seconds}).
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(seed + 1000).normal(size=(num_classes, channels)).astype(np.float32) * signal
    labels = [f"class{k}" for k in range(num_classes)]
    grid = TimeGrid(fps, window, stride)
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


def recall_at(dets, gts, thr=0.5, top=5):
    """Fraction of ground truths matched (same class, tIoU >= thr) by one of the top detections of that class."""
    import torch

    hit = total = 0
    for (d_seg, _, d_lab), (segs, labs) in zip(dets, gts):
        for (s, e), c in zip(segs.tolist(), labs.tolist()):
            total += 1
            cand = d_seg[d_lab == c][:top]
            if len(cand):
                inter = (torch.minimum(cand[:, 1], torch.tensor(e))
                         - torch.maximum(cand[:, 0], torch.tensor(s))).clamp(min=0)
                hit += bool((inter / ((cand[:, 1] - cand[:, 0]) + (e - s) - inter) >= thr).any())
    return hit / total


def overfit_recall(make_model, lr: float, iterations: int = 60) -> tuple[float, float]:
    """recall_at of make_model() on 6 tiny synthetic videos (16 channels, 2 classes, one batch) before and after
    `iterations` AdamW steps on that batch."""
    import torch

    from tal_pipeline.stages.detectors.data import build_training_set, collate

    torch.manual_seed(0)
    feats, ann, labels, grid, _ = synthetic_feature_dataset(6, channels=16, num_classes=2, seed=1, min_len=48,
                                                            max_len=64)
    items = build_training_set(feats, ann, labels, grid)
    x, mask, targets = collate([(it.features, it.segments, it.labels) for it in items], "cpu")
    gts = [(t["segments"], t["labels"]) for t in targets]
    model = make_model()
    model.eval()
    before = recall_at(model.predict(model(x, mask)), gts)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(iterations):
        loss = model.loss(model(x, mask), targets)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return before, recall_at(model.predict(model(x, mask)), gts)
