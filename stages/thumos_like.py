"""A feature-level benchmark of THUMOS14 shape: per-video I3D-like features + ActivityNet-style annotations.

No videos are rendered: each video is a (T, width) float32 array on the time grid of the public
THUMOS14 I3D features (fps 30, window 16, stride 4, i.e. 7.5 steps per second; feature i is the
mean of frames [4i, 4i + 16), centred at (4i + 8)/30 s, stages/timegrid.py), so the BAPG chain
(ImportFeatures -> encoder -> similarity -> TSC -> detectors -> evaluation) runs in minutes.

Model of the data (all numbers are fields of :class:`ThumosLikeParams`; norms are L2 norms of
width-dimensional vectors, so they do not depend on the width):

Layout (THUMOS14 shape, ../shared/data/thumos14/STATS.md; encoded here, never read at run time)
- 20 classes with the THUMOS14 names. A video has one class (85%), two (12%) or three (3%);
  extra classes come mostly from the same family (CliffDiving/Diving, CricketBowling/CricketShot,
  the throws, the jumps). The primary class of the first 20 videos of each subset cycles through
  all classes (every class is trained and tested), later ones follow THUMOS14's class frequency.
- Duration: log-normal, median 150 s, sigma 0.82 (mean ~210 s), at least 10 s, capped at
  `max_duration`; times have THUMOS14's 0.1 s resolution, duration = frames / 30.
- Share of the video covered by actions: Beta(1.1, 2.8) (mean 0.28, median 0.24), at most 0.7.
  Actions are drawn until that share is reached (at least one), so the count per video is
  heavy-tailed (mean ~15, median ~8 for uncapped durations).
- Action length: log-normal around a class median (CricketShot, TennisSwing 1.7 s ... HighJump,
  PoleVault 7.8 s, CleanAndJerk 9.1 s), sigma 0.5, 0.2 s .. 60 s: mean ~3.9 s, median ~2.9 s over
  all instances (short classes have more instances per covered second).
- Around every action a warm-up and a cool-down of 0.5-2 s (the athlete getting ready, the
  landing): background for the annotations, hard negatives for a detector. Actions (with their
  flanks) never overlap; the gaps between them are uniform spacings of the free time.
- Scene cuts (camera changes): on average one per 30 s, never inside an action nor within 0.3 s
  of an action boundary: change points that are not action boundaries.

Features, per frame, then averaged over each 16-frame window (a step that straddles a boundary
gets the mixture of both sides):
- shared mean (norm 1) + the current scene's vector (norm 1; partly tilted towards the video's
  primary class appearance, as the venue is) + slow drift (norm 0.35, knots every 10 s)
  + camera motion along the generic motion direction (+-0.25, knots every 2 s);
- inside the warm-up, the action and the cool-down: the instance's appearance (norm 1 x
  lognormal(0, 0.2), direction = class appearance + 0.4 random jitter); class appearances are
  orthonormal class parts plus a shared "athlete" part (cosine 0.25 between classes);
- inside the action only: the instance's motion (norm 0.8 x lognormal(0, 0.25), direction =
  class motion + 0.4 jitter), ramping up from 20% over the first 0.15-0.5 s and down over the last;
  class motion = 0.5 generic motion + 0.87 class-specific motion; warm-up/cool-down carry only a
  little generic motion (norm 0-0.3): same appearance as the action, not its motion;
- noise on chunks of 4 frames (then averaged over the window's 4 chunks, so neighbouring steps
  are correlated as overlapping I3D windows are): isotropic (norm 0.8 per step) and along the 21
  motion directions (std 0.25 per direction per step): a per-step linear classifier separates
  action from warm-up only partly; a few steps of context make it learnable.
The direction vectors are orthonormal (QR of a seeded Gaussian matrix; width >= 64), so the
known structure can be measured (:func:`class_directions`). Deterministic for a seed: the layout
of a video depends only on (seed, subset, index, max_duration), its features also on the width.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.stages.timegrid import feature_step_seconds, num_windows

# THUMOS14 detection classes (STATS.md), alphabetical = ActionFormer's label_id order.
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
class ThumosLikeParams:
    """Every number of the data model (module docstring)."""

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

    @property
    def duration(self) -> float:
        return self.n_frames / FPS


@dataclass
class Directions:
    """The model's fixed unit directions (orthonormal): class appearance and motion, shared parts."""

    mean: np.ndarray  # (D,)
    shared_appearance: np.ndarray  # (D,)
    appearance: np.ndarray  # (20, D): shared_appearance and class part mixed, unit norm
    appearance_specific: np.ndarray  # (20, D)
    generic_motion: np.ndarray  # (D,)
    motion: np.ndarray  # (20, D): generic and class-specific motion mixed, unit norm
    motion_specific: np.ndarray  # (20, D)

    @property
    def motion_basis(self) -> np.ndarray:
        return np.vstack([self.generic_motion[None], self.motion_specific])


def class_directions(seed: int, width: int, params: ThumosLikeParams | None = None) -> Directions:
    """The appearance/motion directions of every class for a seed and width (orthonormal parts)."""
    p = params or ThumosLikeParams()
    n = len(CLASSES)
    need = 2 * n + 3
    if width < 64:
        raise ValueError(f"--width must be at least 64 (the model needs {need} orthogonal directions), got {width}")
    rng = np.random.default_rng([seed, 7_000_001])
    q, _ = np.linalg.qr(rng.normal(size=(width, need)))
    q = q.T  # (need, D) orthonormal rows
    mean, shared_app, generic_mot = q[0], q[1], q[2]
    app_spec, mot_spec = q[3:3 + n], q[3 + n:3 + 2 * n]
    a, m = p.appearance_shared, p.motion_generic
    appearance = (a * shared_app + math.sqrt(1 - a * a) * app_spec)
    motion = (m * generic_mot + math.sqrt(1 - m * m) * mot_spec)
    return Directions(mean, shared_app, appearance, app_spec, generic_mot, motion, mot_spec)


# ---------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------
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
    while len(items) > 1 and sum(w + l + c for _, w, l, c in items) > dur_ds:
        items.pop()
    if sum(items[0][1:]) > dur_ds:  # one action longer than a short video: shrink it to fit
        label, warm, length, cool = items[0]
        length = min(length, dur_ds // 2)
        warm = cool = min(warm, cool, (dur_ds - length) // 2)
        items[0] = [label, warm, length, cool]
    free = dur_ds - sum(w + l + c for _, w, l, c in items)
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


# ---------------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _jittered(rng: np.random.Generator, direction: np.ndarray, jitter: float) -> np.ndarray:
    g = rng.normal(size=direction.shape) / math.sqrt(direction.shape[-1])
    return _unit(direction + jitter * g)


def _knots(rng: np.random.Generator, times: np.ndarray, every: float, shape: tuple, scale: float) -> np.ndarray:
    """Piecewise-linear random signal at `times` (s): Gaussian knots every `every` s, std `scale`."""
    n = int(math.ceil(times[-1] / every)) + 2
    knots = rng.normal(0.0, scale, size=(n, *shape))
    pos = times / every
    i = np.minimum(pos.astype(int), n - 2)
    w = (pos - i).reshape(-1, *([1] * len(shape)))
    return (1 - w) * knots[i] + w * knots[i + 1]


def render_features(layout: VideoLayout, seed: int, width: int, params: ThumosLikeParams | None = None,
                    directions: Directions | None = None) -> np.ndarray:
    """(T, width) float32 features of one video, T = num_windows(frames, 16, 4)."""
    p = params or ThumosLikeParams()
    d = directions or class_directions(seed, width, p)
    rng = np.random.default_rng([seed, SUBSETS.index(layout.subset), int(layout.video.rsplit("_", 1)[1]), 1, width])
    n_frames = layout.n_frames
    steps = num_windows(n_frames, WINDOW, STRIDE)
    if steps < 1:
        raise ValueError(f"video {layout.video}: {n_frames} frames are fewer than one window of {WINDOW}")
    n_chunks = n_frames // STRIDE  # chunk c = frames [4c, 4c + 4); window i = chunks i..i+3
    frames = n_chunks * STRIDE
    primary = CLASSES.index(layout.classes[0])

    # Scenes: one vector per scene, tilted towards the video's main class appearance (the venue).
    cut_frames = [int(round(c * FPS)) for c in layout.scene_cuts]
    scenes = _jittered(rng, np.zeros((len(cut_frames) + 1, width)), 1.0)
    tilt = rng.uniform(*p.scene_class_tilt, size=(len(scenes), 1))
    scenes = p.scene_norm * _unit(scenes + tilt * d.appearance[primary])
    scene_of_frame = np.searchsorted(np.asarray(cut_frames, dtype=int), np.arange(frames), side="right")
    x = scenes[scene_of_frame].astype(np.float32)  # (frames, D)

    # Action instances: appearance over warm-up + action + cool-down, motion inside the action only.
    for a in layout.actions:
        c = CLASSES.index(a.label)
        app = (p.appearance_norm * rng.lognormal(0.0, p.appearance_scale_sigma)
               * _jittered(rng, d.appearance[c], p.appearance_jitter))
        mot = p.motion_norm * rng.lognormal(0.0, p.motion_scale_sigma) * _jittered(rng, d.motion[c], p.motion_jitter)
        flank_mot = rng.uniform(*p.flank_motion) * d.generic_motion
        f0, f1, f2, f3 = (int(round(t * FPS)) for t in (a.warmup[0], a.start, a.end, a.cooldown[1]))
        f3 = min(f3, frames)
        if f0 >= f3:
            continue
        x[f0:f3] += app.astype(np.float32)
        if f0 < min(f1, frames):
            x[f0:min(f1, frames)] += flank_mot.astype(np.float32)
        if f2 < f3:
            x[f2:f3] += flank_mot.astype(np.float32)
        if f1 < min(f2, frames):
            t = (np.arange(f1, min(f2, frames)) + 0.5) / FPS - a.start
            length = a.end - a.start
            r_in = min(rng.uniform(*p.motion_ramp), length / 3)
            r_out = min(rng.uniform(*p.motion_ramp), length / 3)
            ramp = np.minimum(np.clip(t / r_in, 0, 1), np.clip((length - t) / r_out, 0, 1))
            level = p.motion_floor + (1 - p.motion_floor) * ramp
            x[f1:min(f2, frames)] += (level[:, None] * mot).astype(np.float32)

    chunks = x.reshape(n_chunks, STRIDE, width).mean(axis=1, dtype=np.float64)
    # Smooth terms at chunk centres: shared mean, drift, camera motion (generic motion direction).
    centres = (np.arange(n_chunks) * STRIDE + STRIDE / 2) / FPS
    chunks += p.mean_norm * d.mean
    chunks += _knots(rng, centres, p.drift_knot, (width,), p.drift_norm / math.sqrt(width))
    chunks += _knots(rng, centres, p.camera_knot, (1,), p.camera_norm) * d.generic_motion
    # Noise per chunk; the window mean of 4 chunks halves its std (norms below are per step).
    chunks += rng.normal(0.0, 2 * p.noise_norm / math.sqrt(width), size=chunks.shape)
    basis = d.motion_basis
    chunks += rng.normal(0.0, 2 * p.motion_noise, size=(n_chunks, len(basis))) @ basis
    feats = sum(chunks[k:k + steps] for k in range(WINDOW // STRIDE)) / (WINDOW // STRIDE)
    return feats.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# statistics, writing
# ---------------------------------------------------------------------------------------------
def layout_statistics(layouts: list[VideoLayout]) -> dict:
    """Durations, actions per video, action lengths, covered share, classes per video (as STATS.md)."""
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


def _readme(out: Path, seed: int, width: int, max_duration: float, counts: dict, stats: dict, seconds: float,
            nbytes: int) -> str:
    ann, feats = out.resolve() / "annotations.json", out.resolve() / "features"
    s = stats
    return f"""THUMOS14-shaped feature-level benchmark (tal-pipeline, stages/thumos_like.py)

Made by: tal-pipeline synth --features {out} --videos-train {counts['validation']} --videos-test {counts['test']} \\
    --seed {seed} --width {width} --max-duration {max_duration:g}
(or stages.thumos_like.generate_thumos_like), deterministic for the seed.

No videos: features/<video>.npy are float32 (T, {width}) arrays on the THUMOS14 I3D time grid
(fps 30, window 16, stride 4: {1 / feature_step_seconds(FPS, STRIDE):g} steps per second, feature i centred at (4i + 8)/30 s).
annotations.json is ActivityNet style: subset "validation" (train) / "test", duration, fps 30,
20 THUMOS14 class names; extra keys (hard_negatives = [warm-up, cool-down] per action, scene_cuts,
classes) are for inspection and ignored by the pipeline. The data model (scenes, drift, camera
motion, class appearance + motion, warm-ups/cool-downs with the appearance but not the motion,
noise) is described in the docstring of stages/thumos_like.py.

Statistics ({s['videos']} videos, {s['instances']} actions, {s['total_hours']:.2f} h; generated in {seconds:.1f} s, {nbytes / 1e6:.0f} MB of features):
  video duration, s: mean {s['video_duration_s']['mean']:.1f} / median {s['video_duration_s']['median']:.1f} / min {s['video_duration_s']['min']:.1f} / max {s['video_duration_s']['max']:.1f}
  actions per video: mean {s['actions_per_video']['mean']:.1f} / median {s['actions_per_video']['median']:.0f} / min {s['actions_per_video']['min']:.0f} / max {s['actions_per_video']['max']:.0f}
  action length, s: mean {s['action_len_s']['mean']:.2f} / median {s['action_len_s']['median']:.2f} / min {s['action_len_s']['min']:.1f} / max {s['action_len_s']['max']:.1f}
  share of time covered by actions: mean {s['foreground_fraction']['mean']:.2f} / median {s['foreground_fraction']['median']:.2f}
  videos with 1 / 2 / 3 classes: {' / '.join(str(k) for k in s['videos_with_1_2_3_classes'])}

Run the pipeline on it (from the project folder, where luigi.cfg is; or `tal-pipeline run FullRun ...`):
  luigi --module pipeline FullRun --dataset-features {feats} --dataset-annotations {ann} \\
      --dataset-train-subset validation --dataset-test-subset test --paths-workdir runs/thumos_like
"""


def generate_thumos_like(out: str | Path, videos_train: int = 60, videos_test: int = 40, seed: int = 0,
                         width: int = 256, max_duration: float = 240.0,
                         params: ThumosLikeParams | None = None) -> Path:
    """Write OUT/features/<video>.npy, OUT/annotations.json and OUT/README.txt; return the annotation path.

    The data model is described in this module's docstring (THUMOS14 layout statistics, I3D time
    grid, scenes + drift + camera motion, class appearance and motion, warm-ups/cool-downs that share
    the appearance but not the motion, noise). Videos are generated and written one by one.
    """
    p = params or ThumosLikeParams()
    if videos_train < 1 or videos_test < 1:
        raise ValueError(f"need at least one training and one test video, got {videos_train} and {videos_test}")
    if not max_duration >= p.min_duration:
        raise ValueError(f"--max-duration must be at least {p.min_duration:g} s, got {max_duration}")
    t0 = time.perf_counter()
    directions = class_directions(seed, width, p)
    out = Path(out)
    feature_dir = out / "features"
    feature_dir.mkdir(parents=True, exist_ok=True)
    counts = {"validation": videos_train, "test": videos_test}
    layouts, database, nbytes = [], {}, 0
    for subset, n in counts.items():
        for index in range(n):
            layout = sample_layout(seed, subset, index, max_duration, p)
            feats = render_features(layout, seed, width, p, directions)
            np.save(feature_dir / f"{layout.video}.npy", feats)
            nbytes += feats.nbytes
            layouts.append(layout)
            database[layout.video] = {
                "subset": subset,
                "duration": layout.duration,
                "fps": FPS,
                "annotations": [{"segment": [a.start, a.end], "label": a.label} for a in layout.actions],
                # Not read by the pipeline: the model's hidden structure, for tests and plots.
                "hard_negatives": [[list(a.warmup), list(a.cooldown)] for a in layout.actions],
                "scene_cuts": layout.scene_cuts,
                "classes": layout.classes,
                "feature_steps": int(feats.shape[0]),
            }
    stats = layout_statistics(layouts)
    payload = {"version": "thumos-like-1", "taxonomy": CLASSES, "seed": seed, "width": width,
               "max_duration": max_duration, "time_grid": {"fps": FPS, "window": WINDOW, "stride": STRIDE},
               "params": asdict(p), "stats": stats, "database": database}
    annotations = out / "annotations.json"
    annotations.write_text(json.dumps(payload, indent=1))
    seconds = time.perf_counter() - t0
    (out / "README.txt").write_text(_readme(out, seed, width, max_duration, counts, stats, seconds, nbytes))
    return annotations
