"""ActivityNet-1.3 shape of the feature-level benchmark (synthetic/anet_like.py, whose docstring is the data model):
classes, time grid, subsets, the layout's numbers and the annotations of one video. Videos are laid out as the
THUMOS14-shaped ones (synthetic/thumos_like_layout.py: Action, VideoLayout), so one renderer draws both."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tal_pipeline.synthetic.thumos_like_layout import Action, BenchmarkShape, VideoLayout

# 200 activity classes, as ActivityNet 1.3 has (named by number: the benchmark has no real classes).
CLASSES = [f"activity_{i:03d}" for i in range(200)]
# The time grid of the common ActivityNet features that ActionFormer and TriDet read (TSP, and I3D re-extracted the
# same way): a feature every 16 frames at 15 fps, each over 16 frames, i.e. 0.9375 steps per second (~112 steps for
# a 2-minute video); feature i is the mean of frames [16i, 16i + 16), centred at (16i + 8) / 15 s.
FPS = 15.0
WINDOW = 16
STRIDE = 16
# ActivityNet 1.3's subset names and sizes (10,024 / 4,926 / 5,044 videos); "testing" is annotated here, unlike the
# real one (whose test annotations are withheld): papers train on training and report validation.
SUBSETS = ("training", "validation", "testing")
SUBSET_SIZES = {"training": 10024, "validation": 4926, "testing": 5044}
ANET_SHAPE = BenchmarkShape(tuple(CLASSES), FPS, WINDOW, STRIDE, SUBSETS)


@dataclass(frozen=True)
class AnetLikeParams:
    """The layout's numbers (docstring of synthetic/anet_like.py); the features use ThumosLikeParams' numbers with
    `motion_noise` spread over 201 motion directions instead of 21 (the same total norm)."""

    duration_median: float = 100.0  # s; log-normal: mean ~117 s, std ~68 s (ActivityNet 1.3: ~117 s / ~68 s)
    duration_sigma: float = 0.55
    min_duration: float = 10.0
    max_duration: float = 600.0
    two_instances: float = 0.3  # share of videos with two instances (the others have one)
    cover_beta: tuple[float, float] = (3.0, 3.0)  # share of the video covered by its instances: mean 0.5
    cover_range: tuple[float, float] = (0.15, 0.9)
    split_range: tuple[float, float] = (0.3, 0.7)  # share of the first of two instances in their covered time
    flank: tuple[float, float] = (0.5, 2.0)  # warm-up / cool-down length range, s
    scene_every: float = 20.0  # mean seconds between scene cuts
    cut_margin: float = 0.3  # no scene cut inside an action nor within this distance of its boundaries, s
    motion_noise: float = 0.081  # ThumosLikeParams' 0.25 x sqrt(21 / 201)


def subset_counts(videos: int) -> dict[str, int]:
    """Videos per subset in ActivityNet 1.3's proportions (about 50 / 25 / 25 %), at least one each."""
    if videos < len(SUBSETS):
        raise ValueError(f"--videos must be at least {len(SUBSETS)} (one per subset), got {videos}")
    total = sum(SUBSET_SIZES.values())
    train = max(1, round(videos * SUBSET_SIZES["training"] / total))
    val = max(1, round(videos * SUBSET_SIZES["validation"] / total))
    train = min(train, videos - val - 1)
    return {"training": train, "validation": val, "testing": videos - train - val}


def _t(frames: int) -> float:
    return frames / FPS  # not rounded: a time never passes the duration (n_frames / FPS), and round(t * FPS) is exact


def sample_anet_layout(seed: int, subset: str, index: int, params: AnetLikeParams | None = None) -> VideoLayout:
    """The annotations of one video (no features): deterministic for (seed, subset, index, params). One class per
    video (as in ActivityNet); times are whole frames at 15 fps."""
    p = params or AnetLikeParams()
    rng = np.random.default_rng([seed, SUBSETS.index(subset), index, 0, 1_300])
    video = f"anetlike_{subset}_{index + 1:05d}"
    raw = rng.lognormal(math.log(p.duration_median), p.duration_sigma)
    n_frames = int(round(FPS * min(max(raw, p.min_duration), p.max_duration)))
    # The first 200 videos of a subset cycle through every class (seeded order), later ones draw one uniformly.
    order = np.random.default_rng([seed, 7_000_012]).permutation(len(CLASSES))
    label = CLASSES[int(order[index]) if index < len(CLASSES) else int(rng.integers(len(CLASSES)))]

    k = 2 if rng.random() < p.two_instances else 1
    covered = int(round(float(np.clip(rng.beta(*p.cover_beta), *p.cover_range)) * n_frames))
    first = int(round(covered * rng.uniform(*p.split_range))) if k == 2 else covered
    lengths = [first, covered - first] if k == 2 else [covered]
    lo, hi = (int(round(FPS * x)) for x in p.flank)
    flanks = rng.integers(lo, hi + 1, size=(k, 2))
    free = n_frames - covered - int(flanks.sum())
    if free < 0:  # long actions in a short video: the flanks shrink to what is left
        flanks = (flanks * max(0, n_frames - covered) // max(1, int(flanks.sum()))).astype(int)
        free = n_frames - covered - int(flanks.sum())
    cuts = np.sort(rng.integers(0, free + 1, size=k))
    gaps = np.diff(np.concatenate([[0], cuts, [free]]))
    actions, t = [], int(gaps[0])
    for i, length in enumerate(lengths):
        warm, cool = int(flanks[i, 0]), int(flanks[i, 1])
        start, end = t + warm, t + warm + length
        actions.append(Action(label, _t(start), _t(end), (_t(t), _t(start)), (_t(end), _t(end + cool))))
        t = end + cool + int(gaps[i + 1])

    # Scene cuts: anywhere in the background, never inside an action nor near its boundaries.
    candidates = np.sort(rng.integers(1, n_frames, size=int(rng.poisson(n_frames / FPS / p.scene_every))))
    starts = np.array([a.start for a in actions])[:, None]
    ends = np.array([a.end for a in actions])[:, None]
    seconds = candidates / FPS
    inside = ((seconds > starts - p.cut_margin) & (seconds < ends + p.cut_margin)).any(axis=0)
    scene_cuts = [float(round(c, 4)) for c in seconds[~inside]]
    return VideoLayout(video, subset, n_frames, [label], actions, scene_cuts, fps=FPS)
