"""The triplet sampler as it was before it drew whole batches with array operations (one Python call per sample),
kept as the reference its replacement (stages/bapg/triplets.py) is checked against, in distribution."""
from __future__ import annotations

import numpy as np

from tal_pipeline.stages.bapg.sample_pools import InstancePool, SamplePools


class ReferenceTripletSampler:
    """The draws of stages.bapg.triplets.TripletSampler (its docstring says which), one sample at a time."""

    def __init__(self, pools: SamplePools, rng: np.random.Generator, per_class: int = 2, easy: bool = False,
                 negative_prob: list[np.ndarray | None] | None = None):
        self.rng, self.per_class, self.easy = rng, max(int(per_class), 1), easy
        self.videos = sorted(pools.num_steps)
        vid = {v: i for i, v in enumerate(self.videos)}
        self.easy_pool = [pools.easy_negative[v] for v in self.videos]
        probs = negative_prob if negative_prob is not None else [None] * len(pools.instances)
        self.negative_prob = {id(p): w for p, w in zip(pools.instances, probs)}
        usable = [p for p in pools.instances if p.hard_negative.size or pools.easy_negative[p.video].size]
        self.dropped = len(pools.instances) - len(usable)  # no negative at all in their video
        if not usable:
            raise ValueError("no usable training instance: every instance lacks a step inside it or any negative")
        self.by_class: dict[str, tuple[list[InstancePool], np.ndarray, list[int]]] = {}
        for label in sorted({p.label for p in usable}):
            members = [p for p in usable if p.label == label]
            weight = np.array([p.positive.size for p in members], np.float64)
            self.by_class[label] = (members, weight / weight.sum(), [vid[p.video] for p in members])
        self.classes = list(self.by_class)
        self.order: list[str] = []

    def _one(self, label: str) -> tuple[int, int, int, int, int]:
        members, prob, vids = self.by_class[label]
        k = int(self.rng.choice(len(members), p=prob))  # anchors uniform over the class's positive steps
        p, v = members[k], vids[k]
        i = int(self.rng.integers(p.positive.size))
        j = i if p.positive.size == 1 else (i + 1 + int(self.rng.integers(p.positive.size - 1))) % p.positive.size
        ez = self.easy_pool[v]
        w = self.negative_prob[id(p)] if p.hard_negative.size else None
        pool = p.hard_negative if p.hard_negative.size else ez
        neg = int(pool[self.rng.integers(pool.size)] if w is None else pool[self.rng.choice(pool.size, p=w)])
        e = int(ez[self.rng.integers(ez.size)]) if (self.easy and ez.size) else -1
        return v, int(p.positive[i]), int(p.positive[j]), neg, e

    def batch(self, size: int) -> np.ndarray:
        """(B, 5) int64: video index, anchor, positive, negative, easy negative (-1 when none)."""
        out = []
        while len(out) < size:
            if not self.order:
                self.order = [self.classes[i] for i in self.rng.permutation(len(self.classes))]
            label = self.order.pop()
            out += [self._one(label) for _ in range(min(self.per_class, size - len(out)))]
        return np.asarray(out, np.int64)

