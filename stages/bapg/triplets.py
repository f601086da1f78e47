"""The triplet sampler of encoder training (BAPG II-B), drawn for a whole batch with numpy array operations
instead of one Python call per sample: each instance's pools are flat arrays with offsets, and a draw from a pool
of n is an index below n (uniform) or an inverse-CDF lookup (distance-weighted hard negatives)."""
from __future__ import annotations

import numpy as np

from tal_pipeline.stages.bapg.sample_pools import SamplePools


def _flat(pools: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Variable-length int arrays -> (values concatenated, offset of each, size of each)."""
    sizes = np.array([p.size for p in pools], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    values = np.concatenate([np.asarray(p, np.int64) for p in pools]) if pools else np.zeros(0, np.int64)
    return values, offsets, sizes


class TripletSampler:
    """Draws (anchor, positive, negative[, easy]) step triplets as (video index, step) arrays, seeded.

    A batch visits classes in a shuffled cycle and takes `per_class` samples from each visit (the paper's n = 2
    per class); within a class the anchor is uniform over its positive steps, the positive another step of the
    same instance (the anchor itself only if the instance has one step), the negative uniform over the
    instance's hard pool (over its video's easy pool when the hard pool is empty); negative_prob (one entry per
    pools.instances: (H,) probabilities over its hard pool, or None for uniform) weights the hard negatives.
    """

    def __init__(self, pools: SamplePools, rng: np.random.Generator, per_class: int = 2, easy: bool = False,
                 negative_prob: list[np.ndarray | None] | None = None):
        self.rng, self.per_class, self.easy = rng, max(int(per_class), 1), easy
        self.videos = sorted(pools.num_steps)
        vid = {v: i for i, v in enumerate(self.videos)}
        probs = negative_prob if negative_prob is not None else [None] * len(pools.instances)
        usable = [(p, w) for p, w in zip(pools.instances, probs)
                  if p.hard_negative.size or pools.easy_negative[p.video].size]
        self.dropped = len(pools.instances) - len(usable)  # no negative at all in their video
        if not usable:
            raise ValueError("no usable training instance: every instance lacks a step inside it or any negative")
        usable.sort(key=lambda pw: pw[0].label)  # stable: instances of a class in their pools order
        self.video = np.array([vid[p.video] for p, _ in usable], np.int64)  # (I,)
        self.pos, self.pos_off, self.pos_n = _flat([p.positive for p, _ in usable])
        self.hard, self.hard_off, self.hard_n = _flat([p.hard_negative for p, _ in usable])
        self.easy_pool, self.easy_off, self.easy_n = _flat([pools.easy_negative[v] for v in self.videos])
        # Hard-negative CDF per instance, shifted by the instance's rank: one searchsorted draws for all of them.
        cdf = [rank + np.cumsum(w if w is not None else np.full(p.hard_negative.size, 1.0 / p.hard_negative.size))
               for rank, (p, w) in enumerate(usable) if p.hard_negative.size]
        self.hard_cdf = np.concatenate(cdf) if cdf else np.zeros(0)
        self.weighted = np.array([w is not None for _, w in usable])  # (I,)
        self.classes = sorted({p.label for p, _ in usable})
        label = np.array([self.classes.index(p.label) for p, _ in usable])
        self.by_class = []  # per class: its instances and the chance of each (anchors uniform over positive steps)
        for c in range(len(self.classes)):
            members = np.flatnonzero(label == c)
            self.by_class.append((members, self.pos_n[members] / self.pos_n[members].sum()))
        self.order: list[int] = []

    def _class_of_each(self, size: int) -> np.ndarray:
        """(size,) class index per sample: per_class consecutive samples per visit of the shuffled class cycle."""
        visits = []
        for _ in range(-(-size // self.per_class)):
            if not self.order:
                self.order = self.rng.permutation(len(self.classes)).tolist()
            visits.append(self.order.pop())
        return np.repeat(np.asarray(visits, np.int64), self.per_class)[:size]

    def _easy(self, v: np.ndarray, e: np.ndarray) -> np.ndarray:
        """(B,) an easy negative of each video v (uniform over its pool of e steps; 0 where the pool is empty)."""
        if not self.easy_pool.size:
            return np.zeros(v.size, np.int64)
        pick = self.easy_off[v] + self.rng.integers(np.maximum(e, 1))
        return self.easy_pool[np.minimum(pick, self.easy_pool.size - 1)]

    def batch(self, size: int) -> np.ndarray:
        """(B, 5) int64: video index, anchor, positive, negative, easy negative (-1 when none)."""
        rng = self.rng
        classes = self._class_of_each(size)
        inst = np.empty(size, np.int64)  # (B,) the instance of each sample
        for c in np.unique(classes):
            where = np.flatnonzero(classes == c)
            members, prob = self.by_class[c]
            inst[where] = members[rng.choice(members.size, size=where.size, p=prob)]
        n = self.pos_n[inst]
        i = rng.integers(n)  # (B,) anchor: uniform over the instance's positives
        j = np.where(n == 1, i, (i + 1 + rng.integers(np.maximum(n - 1, 1))) % n)  # another positive
        v, h, e = self.video[inst], self.hard_n[inst], self.easy_n[self.video[inst]]
        neg = self._easy(v, e)  # no hard negative: an easy one of the same video
        if self.hard.size:
            last = self.hard_off[inst] + np.maximum(h, 1) - 1  # (B,) the instance's last hard negative
            uniform = self.hard_off[inst] + rng.integers(np.maximum(h, 1))
            weighted = np.searchsorted(self.hard_cdf, inst + rng.random(size), side="right")  # inverse CDF
            pick = np.minimum(np.where(self.weighted[inst], weighted, uniform), last).clip(max=self.hard.size - 1)
            neg = np.where(h > 0, self.hard[pick], neg)
        ez = np.where(e > 0, self._easy(v, e), -1) if self.easy else np.full(size, -1)  # an independent draw
        pos = self.pos[self.pos_off[inst] + i], self.pos[self.pos_off[inst] + j]
        return np.stack([v, pos[0], pos[1], neg, ez], axis=1).astype(np.int64)
