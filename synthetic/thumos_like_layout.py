"""THUMOS14 shape of the feature-level benchmark (synthetic/thumos_like.py, whose docstring is the data model):
classes, time grid, the model's numbers, and the annotations of one video (actions with their warm-ups and
cool-downs, scene cuts) with their statistics."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# THUMOS14 detection classes, alphabetical = ActionFormer's label_id order.
CLASSES = [
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling", "CricketShot",
    "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow", "LongJump", "PoleVault",
    "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
]
# Median action length per class in seconds (short strokes ... long run-ups).
CLASS_MEDIAN_LENGTH = {
    "BaseballPitch": 2.9, "BasketballDunk": 2.6, "Billiards": 2.9, "CleanAndJerk": 9.1, "CliffDiving": 3.4,
    "CricketBowling": 2.3, "CricketShot": 1.7, "Diving": 3.0, "FrisbeeCatch": 2.1, "GolfSwing": 2.9,
    "HammerThrow": 7.2, "HighJump": 7.8, "JavelinThrow": 5.9, "LongJump": 7.2, "PoleVault": 7.8, "Shotput": 5.2,
    "SoccerPenalty": 3.6, "TennisSwing": 1.7, "ThrowDiscus": 5.9, "VolleyballSpiking": 2.3,
}
# THUMOS14 instances per class, validation + test (stats.json): how often a class is a video's main class.
CLASS_WEIGHT = {
    "BaseballPitch": 71, "BasketballDunk": 791, "Billiards": 187, "CleanAndJerk": 140, "CliffDiving": 360,
    "CricketBowling": 316, "CricketShot": 351, "Diving": 887, "FrisbeeCatch": 151, "GolfSwing": 67,
    "HammerThrow": 441, "HighJump": 406, "JavelinThrow": 361, "LongJump": 305, "PoleVault": 519, "Shotput": 214,
    "SoccerPenalty": 114, "TennisSwing": 210, "ThrowDiscus": 208, "VolleyballSpiking": 266,
}
# Classes that share a video in THUMOS14 (one broadcast shows several events of one sport).
FAMILIES = [
    ["CliffDiving", "Diving"], ["CricketBowling", "CricketShot"],
    ["HammerThrow", "JavelinThrow", "Shotput", "ThrowDiscus"], ["HighJump", "LongJump", "PoleVault"],
]

# Time grid of the public THUMOS14 I3D features.
FPS = 30.0
WINDOW = 16
STRIDE = 4
FRAMES_PER_DS = 3  # frames per 0.1 s at 30 fps: layouts are in tenths of seconds, features in frames
SUBSETS = ("validation", "test")


@dataclass(frozen=True)
class BenchmarkShape:
    """What the feature renderer (synthetic/thumos_like_features.py) takes from a benchmark: its class names, its
    time grid (frames at `fps`, windows of `window` frames every `stride`) and its subsets (a subset's index seeds
    its videos' features)."""

    classes: tuple[str, ...]
    fps: float
    window: int
    stride: int
    subsets: tuple[str, ...]


THUMOS_SHAPE = BenchmarkShape(tuple(CLASSES), FPS, WINDOW, STRIDE, SUBSETS)


@dataclass(frozen=True)
class ThumosLikeParams:
    """Every number of the data model (docstring of synthetic/thumos_like.py)."""

    # layout
    duration_median: float = 150.0
    duration_sigma: float = 0.82
    min_duration: float = 10.0
    classes_per_video: tuple[float, float, float] = (0.85, 0.12, 0.03)
    family_share: float = 0.7  # an extra class comes from the main class's family (if it has one)
    primary_share: float = 0.75  # share of a multi-class video's actions that are of its main class
    cover_beta: tuple[float, float] = (1.1, 2.8)
    cover_max: float = 0.7
    length_sigma: float = 0.5
    min_length: float = 0.2
    max_length: float = 60.0
    flank: tuple[float, float] = (0.5, 2.0)  # warm-up / cool-down length range, s
    scene_every: float = 30.0  # mean seconds between scene cuts
    cut_margin: float = 0.3  # no scene cut within this distance of an action boundary, s
    # features
    mean_norm: float = 1.0
    scene_norm: float = 1.0
    scene_class_tilt: tuple[float, float] = (0.0, 0.6)
    drift_norm: float = 0.35
    drift_knot: float = 10.0
    camera_norm: float = 0.25
    camera_knot: float = 2.0
    appearance_norm: float = 1.0
    appearance_shared: float = 0.5  # weight of the shared "athlete" direction in each class appearance
    appearance_jitter: float = 0.4
    appearance_scale_sigma: float = 0.2
    motion_norm: float = 0.8
    motion_generic: float = 0.5  # weight of the generic motion direction in each class motion
    motion_jitter: float = 0.4
    motion_scale_sigma: float = 0.25
    motion_ramp: tuple[float, float] = (0.15, 0.5)
    motion_floor: float = 0.2
    flank_motion: tuple[float, float] = (0.0, 0.3)  # generic motion norm in warm-ups/cool-downs
    noise_norm: float = 0.8
    motion_noise: float = 0.25


@dataclass
class Action:
    label: str
    start: float  # s
    end: float
    warmup: tuple[float, float]
    cooldown: tuple[float, float]


@dataclass
class VideoLayout:
    video: str
    subset: str
    n_frames: int
    classes: list[str]
    actions: list[Action] = field(default_factory=list)
    scene_cuts: list[float] = field(default_factory=list)  # s
    fps: float = FPS  # of the frames the layout counts

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps


def _video_classes(rng: np.random.Generator, primary: int, p: ThumosLikeParams) -> list[int]:
    k = 1 + int(rng.choice(3, p=np.asarray(p.classes_per_video) / sum(p.classes_per_video)))
    classes = [primary]
    family = next((f for f in FAMILIES if CLASSES[primary] in f), None)
    while len(classes) < k:
        pool = [CLASSES.index(c) for c in family if CLASSES.index(c) not in classes] if family else []
        if not pool or rng.random() >= p.family_share:
            pool = [c for c in range(len(CLASSES)) if c not in classes]
        classes.append(int(rng.choice(pool)))
    return classes


def sample_layout(seed: int, subset: str, index: int, max_duration: float = 240.0,
                  params: ThumosLikeParams | None = None) -> VideoLayout:
    """The annotations of one video (no features): deterministic for (seed, subset, index, max_duration)."""
    p = params or ThumosLikeParams()
    s_code = SUBSETS.index(subset)
    rng = np.random.default_rng([seed, s_code, index, 0])
    video = f"thumoslike_{subset}_{index + 1:04d}"
    # Duration in tenths of seconds.
    raw = rng.lognormal(math.log(p.duration_median), p.duration_sigma)
    dur_ds = int(round(10 * min(max(raw, p.min_duration), max_duration)))
    # Main class: the first 20 videos of a subset cycle through all classes (seeded order).
    order = np.random.default_rng([seed, 7_000_002]).permutation(len(CLASSES))
    if index < len(CLASSES):
        primary = int(order[index])
    else:
        w = np.array([CLASS_WEIGHT[c] for c in CLASSES], dtype=float)
        primary = int(rng.choice(len(CLASSES), p=w / w.sum()))
    classes = _video_classes(rng, primary, p)

    target = min(rng.beta(*p.cover_beta), p.cover_max) * dur_ds
    lo_f, hi_f = (int(round(10 * x)) for x in p.flank)
    lo_l, hi_l = int(round(10 * p.min_length)), int(round(10 * p.max_length))
    items, covered = [], 0  # (label, warm, length, cool) in ds
    while covered < target or not items:
        if len(classes) == 1 or rng.random() < p.primary_share:
            label = classes[0]
        else:
            label = int(rng.choice(classes[1:]))
        median = CLASS_MEDIAN_LENGTH[CLASSES[label]]
        length = int(np.clip(round(10 * rng.lognormal(math.log(median), p.length_sigma)), lo_l, hi_l))
        warm, cool = (int(x) for x in rng.integers(lo_f, hi_f + 1, size=2))
        items.append([label, warm, length, cool])
        covered += length
    while len(items) > 1 and sum(w + n + c for _, w, n, c in items) > dur_ds:
        items.pop()
    if sum(items[0][1:]) > dur_ds:  # one action longer than a short video: shrink it to fit
        label, warm, length, cool = items[0]
        length = min(length, dur_ds // 2)
        warm = cool = min(warm, cool, (dur_ds - length) // 2)
        items[0] = [label, warm, length, cool]
    free = dur_ds - sum(w + n + c for _, w, n, c in items)
    cuts = np.sort(rng.integers(0, free + 1, size=len(items)))
    gaps = np.diff(np.concatenate([[0], cuts, [free]]))
    actions, t = [], int(gaps[0])
    for k, (label, warm, length, cool) in enumerate(items):
        start, end = t + warm, t + warm + length
        actions.append(Action(CLASSES[label], start / 10, end / 10, (t / 10, start / 10),
                              (end / 10, (end + cool) / 10)))
        t = end + cool + int(gaps[k + 1])

    # Scene cuts: anywhere but inside an action or near its boundaries.
    n_frames = dur_ds * FRAMES_PER_DS
    n_cuts = int(rng.poisson(dur_ds / 10 / p.scene_every))
    candidates = np.sort(rng.integers(1, n_frames, size=n_cuts)) / FPS
    scene_cuts = [float(round(c, 4)) for c in candidates
                  if not any(a.start - p.cut_margin < c < a.end + p.cut_margin for a in actions)]
    return VideoLayout(video, subset, n_frames, [CLASSES[c] for c in classes], actions, scene_cuts)


def layout_statistics(layouts: list[VideoLayout]) -> dict:
    """Durations, actions per video, action lengths, covered share, classes per video (as measured on THUMOS14)."""
    durations = np.array([v.duration for v in layouts])
    counts = np.array([len(v.actions) for v in layouts])
    lengths = np.array([a.end - a.start for v in layouts for a in v.actions])
    cover = np.array([sum(a.end - a.start for a in v.actions) / v.duration for v in layouts])
    n_classes = np.array([len({a.label for a in v.actions}) for v in layouts])

    def summary(x):
        return {"mean": round(float(x.mean()), 3), "median": round(float(np.median(x)), 3),
                "min": round(float(x.min()), 3), "max": round(float(x.max()), 3)}

    return {"videos": len(layouts), "instances": int(counts.sum()), "video_duration_s": summary(durations),
            "total_hours": round(float(durations.sum() / 3600), 3), "actions_per_video": summary(counts),
            "action_len_s": summary(lengths), "foreground_fraction": summary(cover),
            "classes_per_video_max": int(n_classes.max()),
            "videos_with_1_2_3_classes": [int((n_classes == k).sum()) for k in (1, 2, 3)],
            "classes_present": len({a.label for v in layouts for a in v.actions})}
