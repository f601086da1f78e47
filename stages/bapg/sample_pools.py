"""BAPG II-B sample pools (Fig. 3) with hard negative mining, and the pool similarity that measures an embedding
on them.

Pools, per training video, on its feature time grid (step i is centred at `TimeGrid.to_seconds(i)`; a step
belongs to an instance if its centre lies in [start, end)):
- positives of an instance: its steps;
- hard negatives of an instance: the background steps of the clip just before and of the clip just after it,
  contiguous with it, stopping at the neighbouring action (or ambiguous span, or the video edge) and capped at
  `hard_negative_seconds` from the instance boundary (default 2.0 s: the "warm-up / cool-down" of an action;
  None = the whole background clip, as the paper; "instance" = the instance's own duration);
- easy negatives of a video: every other background step (in no instance, no ambiguous span, no hard pool).
Instances with no step centre inside them (shorter than a step) are skipped and counted.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tal_pipeline.stages.data.timegrid import TimeGrid, video_grid


@dataclass(frozen=True)
class InstancePool:
    """One action instance: positive steps (P,) and its hard negative steps (H,), int64, sorted."""
    video: str
    label: str
    start: float
    end: float
    positive: np.ndarray
    hard_negative: np.ndarray


@dataclass
class SamplePools:
    """Pools of all training videos. easy_negative: {video: (E,) int64}; skipped: instances with no step inside."""
    instances: list[InstancePool]
    easy_negative: dict[str, np.ndarray]
    num_steps: dict[str, int]
    skipped: list[dict] = field(default_factory=list)
    hard_negative_seconds: float | str | None = 2.0

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    @property
    def labels(self) -> list[str]:
        return sorted({p.label for p in self.instances})

    def summary(self) -> dict:
        """Counts for logs and the checkpoint config (JSON-able)."""
        return {"videos": len(self.num_steps), "instances": len(self.instances), "skipped_too_short": self.n_skipped,
                "no_hard_negative": sum(p.hard_negative.size == 0 for p in self.instances),
                "positive_steps": int(sum(p.positive.size for p in self.instances)),
                "hard_negative_steps": int(sum(p.hard_negative.size for p in self.instances)),
                "easy_negative_steps": int(sum(e.size for e in self.easy_negative.values())),
                "hard_negative_seconds": self.hard_negative_seconds}


def _cap_seconds(hard_negative_seconds, start: float, end: float) -> float:
    if hard_negative_seconds is None:
        return math.inf
    if hard_negative_seconds == "instance":
        return end - start
    return float(hard_negative_seconds)


def _run_before(first: int, free: np.ndarray, centres: np.ndarray, limit: float) -> np.ndarray:
    """Steps [lo, first) that are free and centred at or after `limit`, contiguous up to `first`."""
    ok = free[:first] & (centres[:first] >= limit)  # (first,)
    blocked = np.flatnonzero(~ok)
    lo = int(blocked[-1]) + 1 if blocked.size else 0
    return np.arange(lo, first, dtype=np.int64)


def _run_after(last: int, free: np.ndarray, centres: np.ndarray, limit: float) -> np.ndarray:
    """Steps (last, hi) that are free and centred before `limit`, contiguous from `last`."""
    ok = free[last + 1:] & (centres[last + 1:] < limit)
    blocked = np.flatnonzero(~ok)
    hi = last + 1 + (int(blocked[0]) if blocked.size else ok.size)
    return np.arange(last + 1, hi, dtype=np.int64)


def video_pools(video: str, rows: pd.DataFrame, num_steps: int, grid: TimeGrid,
                hard_negative_seconds: float | str | None = 2.0
                ) -> tuple[list[InstancePool], np.ndarray, list[dict]]:
    """Pools of one video: (instance pools in start order, easy negatives (E,), skipped instances).

    rows: its annotations (label, start, end seconds, optional bool `ambiguous`: such spans are neither
    positive nor negative and stop hard-negative clips like an action does).
    """
    centres = grid.to_seconds(np.arange(num_steps))  # (T,) seconds
    rows = rows.sort_values(["start", "end", "label"], kind="stable")
    amb = rows["ambiguous"].to_numpy(bool) if "ambiguous" in rows.columns else np.zeros(len(rows), bool)
    start, end = rows["start"].to_numpy(np.float64), rows["end"].to_numpy(np.float64)
    bad = ~(end > start)
    if bad.any():
        raise ValueError(f"video {video!r}: annotation with end <= start at start={start[bad][0]}s")
    inside = (centres[None, :] >= start[:, None]) & (centres[None, :] < end[:, None])  # (M, T)
    free = ~inside.any(axis=0)  # (T,) background: in no action and no ambiguous span
    pools, skipped = [], []
    hard_any = np.zeros(num_steps, bool)
    for k, label in enumerate(rows["label"].tolist()):
        if amb[k]:
            continue
        pos = np.flatnonzero(inside[k]).astype(np.int64)
        if pos.size == 0:
            skipped.append({"video": video, "label": label, "start": float(start[k]), "end": float(end[k])})
            continue
        cap = _cap_seconds(hard_negative_seconds, start[k], end[k])
        hard = np.concatenate([_run_before(int(pos[0]), free, centres, start[k] - cap),
                               _run_after(int(pos[-1]), free, centres, end[k] + cap)])
        hard_any[hard] = True
        pools.append(InstancePool(video, str(label), float(start[k]), float(end[k]), pos, hard))
    easy = np.flatnonzero(free & ~hard_any).astype(np.int64)
    return pools, easy, skipped


def build_sample_pools(actions: pd.DataFrame, time_grid: TimeGrid | Mapping[str, TimeGrid],
                       num_steps: Mapping[str, int], hard_negative_seconds: float | str | None = 2.0) -> SamplePools:
    """Pools of the videos in `num_steps` ({video: T}); annotations of other videos are ignored (another split).

    time_grid: one TimeGrid for every video or {video: TimeGrid}."""
    missing = {"video", "label", "start", "end"} - set(actions.columns)
    if missing:
        raise ValueError(f"annotations lack columns {sorted(missing)}")
    if not (hard_negative_seconds is None or hard_negative_seconds == "instance" or
            (isinstance(hard_negative_seconds, (int, float)) and hard_negative_seconds >= 0)):
        raise ValueError(f"hard_negative_seconds must be >= 0, None or 'instance', got {hard_negative_seconds!r}")
    by_video = {v: df for v, df in actions.groupby("video", sort=False)}
    empty = actions.iloc[:0]
    instances, easy, skipped = [], {}, []
    for video in sorted(num_steps):
        t = int(num_steps[video])
        pools, e, s = video_pools(video, by_video.get(video, empty), t, video_grid(time_grid, video),
                                  hard_negative_seconds)
        instances += pools
        easy[video] = e
        skipped += s
    return SamplePools(instances, easy, {v: int(num_steps[v]) for v in sorted(num_steps)}, skipped,
                       hard_negative_seconds)


def pool_similarity(embeddings: Mapping[str, np.ndarray] | Callable[[str], np.ndarray], pools: SamplePools,
                    max_steps: int = 256, seed: int = 0) -> dict:
    """Mean cosine similarity of anchor-positive / anchor-hard negative / anchor-easy negative pairs.

    embeddings: {video: (T, D)} or a function video -> (T, D) (raw features work too: rows are L2-normalised
    here). For each instance with >= 2 positives and >= 1 hard negative: the mean over all ordered pairs of
    distinct positives, over all (positive, hard negative) pairs and over all (positive, easy negative of its
    video) pairs; each set is cut to `max_steps` steps drawn with `seed` if larger. Instance means are then
    averaged over instances. gap = positive - hard_negative: how much better than its own boundary
    surroundings an instance holds together (the quantity BAPG's hard negative mining targets).
    """
    rng = np.random.default_rng(seed)
    get = embeddings if callable(embeddings) else embeddings.__getitem__
    cache: dict[str, np.ndarray] = {}

    def unit(video: str) -> np.ndarray:
        if video not in cache:
            e = np.asarray(get(video), np.float64)
            cache[video] = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)  # (T, D)
        return cache[video]

    def cut(idx: np.ndarray) -> np.ndarray:
        return np.sort(rng.choice(idx, max_steps, replace=False)) if idx.size > max_steps else idx

    pos_m, hard_m, easy_m = [], [], []
    for p in pools.instances:
        if p.positive.size < 2 or p.hard_negative.size == 0:
            continue
        e = unit(p.video)
        a = e[cut(p.positive)]  # (P, D)
        s = a @ a.T  # (P, P)
        pos_m.append((s.sum() - np.trace(s)) / (s.shape[0] * (s.shape[0] - 1)))
        hard_m.append(float((a @ e[cut(p.hard_negative)].T).mean()))
        easy = pools.easy_negative.get(p.video, np.zeros(0, np.int64))
        if easy.size:
            easy_m.append(float((a @ e[cut(easy)].T).mean()))

    def mean(xs: list[float]) -> float:
        return float(np.mean(xs)) if xs else float("nan")

    return {"positive": mean(pos_m), "hard_negative": mean(hard_m), "easy_negative": mean(easy_m),
            "gap": mean(pos_m) - mean(hard_m), "n_instances": len(pos_m)}
