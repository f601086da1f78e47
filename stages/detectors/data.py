"""Detector training data: feature sequences with their ground truth in feature steps (VideoItem), crops,
padded batches, sliding windows and the BAPG channels' statistics (pure functions, torch only in collate).

Units: continuous feature-step coordinates where feature i is centred at index i; seconds map to steps only
through `TimeGrid.to_steps` (stages/data/timegrid.py).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tal_pipeline.stages.data.timegrid import TimeGrid, video_grid


@dataclass
class VideoItem:
    """One training video: features (T, C) float32, ground truth (M, 2) float32 in feature steps, labels (M,) int64."""
    video: str
    features: np.ndarray
    segments: np.ndarray
    labels: np.ndarray


def check_features(video: str, arr: np.ndarray, in_channels: int | None = None) -> np.ndarray:
    """One video's features as float32 (T, C), refused (naming the video) unless T >= 1, finite, and with
    `in_channels` channels when given."""
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
                       time_grid: TimeGrid | Mapping[str, TimeGrid]) -> list[VideoItem]:
    """Videos of `features` (dict video -> (T, C)) with their annotations (DataFrame: video, label, start, end in
    seconds) converted to feature steps on their time grid (one TimeGrid or {video: TimeGrid}). Videos without
    annotations are all background; annotations of videos without features are ignored (another split)."""
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
        arr = check_features(video, features[video], channels)
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
            grid = video_grid(time_grid, video)
            segs = np.stack([grid.to_steps(start), grid.to_steps(end)], axis=1).astype(np.float32)
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


def epoch_batches(lengths: np.ndarray, batch_size: int, bucket: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches of video indices: a random order of the videos cut into batches of batch_size.

    bucket = k > 0: each run of k batches of that order is first sorted by video length, and the batches are then
    shuffled, so a batch holds videos of similar length and collate pads less (docs/method.md §8: how much, and
    why it is off by default). Every video is still in exactly one batch per epoch. bucket = 0 draws
    exactly what plain random batches draw.
    """
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))  # (N,)
    if bucket:
        chunk = bucket * batch_size
        order = np.concatenate([part[np.argsort(lengths[part], kind="stable")]
                                for part in np.split(order, range(chunk, len(order), chunk))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[k] for k in rng.permutation(len(batches))] if bucket else batches


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


def window_starts(length: int, window: int) -> list[int]:
    """Starts of windows of `window` steps, half overlapping, the last one flush with the end: cover [0, length)."""
    if length <= window:
        return [0]
    hop = max(window // 2, 1)
    starts = list(range(0, length - window + 1, hop))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts
