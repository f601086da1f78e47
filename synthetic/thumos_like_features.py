"""Features of the THUMOS14-shaped benchmark (synthetic/thumos_like.py, whose docstring is the data model): the
orthonormal class directions, the (T, width) I3D-like features of one video rendered from its layout, and the writing
of a benchmark's feature files and annotations (this one's and the ActivityNet-shaped one's)."""
from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tal_pipeline.stages.data.timegrid import num_windows
from tal_pipeline.synthetic.thumos_like_layout import (
    CLASSES,
    THUMOS_SHAPE,
    Action,
    BenchmarkShape,
    ThumosLikeParams,
    VideoLayout,
    layout_statistics,
)


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
                    directions: Directions | None = None, shape: BenchmarkShape = THUMOS_SHAPE) -> np.ndarray:
    """(T, width) float32 features of one video, T = num_windows(frames, window, stride) of `shape`'s grid (THUMOS14's
    16 / 4 at 30 fps by default); the window must be a multiple of the stride."""
    p = params or ThumosLikeParams()
    d = directions or class_directions(seed, width, p)
    fps, window, stride, classes = shape.fps, shape.window, shape.stride, shape.classes
    rng = np.random.default_rng([seed, shape.subsets.index(layout.subset), int(layout.video.rsplit("_", 1)[1]), 1,
                                 width])
    n_frames = layout.n_frames
    steps = num_windows(n_frames, window, stride)
    if steps < 1:
        raise ValueError(f"video {layout.video}: {n_frames} frames are fewer than one window of {window}")
    n_chunks = n_frames // stride  # chunk c = frames [4c, 4c + 4); window i = chunks i..i+3 (THUMOS14)
    frames = n_chunks * stride
    primary = classes.index(layout.classes[0])

    # Scenes: one vector per scene, tilted towards the video's main class appearance (the venue).
    cut_frames = [int(round(c * fps)) for c in layout.scene_cuts]
    scenes = _jittered(rng, np.zeros((len(cut_frames) + 1, width)), 1.0)
    tilt = rng.uniform(*p.scene_class_tilt, size=(len(scenes), 1))
    scenes = p.scene_norm * _unit(scenes + tilt * d.appearance[primary])
    scene_of_frame = np.searchsorted(np.asarray(cut_frames, dtype=int), np.arange(frames), side="right")
    x = scenes[scene_of_frame].astype(np.float32)  # (frames, D)
    for a in layout.actions:
        _add_action(x, a, classes.index(a.label), fps, rng, p, d)

    chunks = x.reshape(n_chunks, stride, width).mean(axis=1, dtype=np.float64)
    # Smooth terms at chunk centres: shared mean, drift, camera motion (generic motion direction).
    centres = (np.arange(n_chunks) * stride + stride / 2) / fps
    chunks += p.mean_norm * d.mean
    chunks += _knots(rng, centres, p.drift_knot, (width,), p.drift_norm / math.sqrt(width))
    chunks += _knots(rng, centres, p.camera_knot, (1,), p.camera_norm) * d.generic_motion
    # Noise per chunk; the window mean of its window // stride chunks (4 for THUMOS14) divides its std by the square
    # root of that (norms below are per step).
    per_window = math.sqrt(window // stride)
    chunks += rng.normal(0.0, per_window * p.noise_norm / math.sqrt(width), size=chunks.shape)
    basis = d.motion_basis
    chunks += rng.normal(0.0, per_window * p.motion_noise, size=(n_chunks, len(basis))) @ basis
    feats = sum(chunks[k:k + steps] for k in range(window // stride)) / (window // stride)
    return feats.astype(np.float32)


def _add_action(x: np.ndarray, a: Action, c: int, fps: float, rng: np.random.Generator, p: ThumosLikeParams,
                d: Directions) -> None:
    """Add one instance of class `c` to the per-frame features x (frames, D), in place: its appearance over
    warm-up + action + cool-down, a little generic motion on the flanks, its class motion inside the action only."""
    frames = len(x)
    app = (p.appearance_norm * rng.lognormal(0.0, p.appearance_scale_sigma)
           * _jittered(rng, d.appearance[c], p.appearance_jitter))
    mot = p.motion_norm * rng.lognormal(0.0, p.motion_scale_sigma) * _jittered(rng, d.motion[c], p.motion_jitter)
    flank_mot = rng.uniform(*p.flank_motion) * d.generic_motion
    f0, f1, f2, f3 = (int(round(t * fps)) for t in (a.warmup[0], a.start, a.end, a.cooldown[1]))
    f3 = min(f3, frames)
    if f0 >= f3:
        return
    x[f0:f3] += app.astype(np.float32)
    if f0 < min(f1, frames):
        x[f0:min(f1, frames)] += flank_mot.astype(np.float32)
    if f2 < f3:
        x[f2:f3] += flank_mot.astype(np.float32)
    if f1 < min(f2, frames):
        t = (np.arange(f1, min(f2, frames)) + 0.5) / fps - a.start
        length = a.end - a.start
        r_in = min(rng.uniform(*p.motion_ramp), length / 3)
        r_out = min(rng.uniform(*p.motion_ramp), length / 3)
        ramp = np.minimum(np.clip(t / r_in, 0, 1), np.clip((length - t) / r_out, 0, 1))
        level = p.motion_floor + (1 - p.motion_floor) * ramp
        x[f1:min(f2, frames)] += (level[:, None] * mot).astype(np.float32)


def save_features(path: Path, feats: np.ndarray) -> int:
    """np.save `feats` to `path` through a hidden sibling renamed into place: a reader never sees half a file, and a
    folder written again over an older one changes its directory's mtime, which the pipeline's per-process cache of
    the dataset identity checks (pipeline/dataset.py). Returns the bytes of features written."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, feats)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return int(feats.nbytes)


def database_entry(layout: VideoLayout, feats: np.ndarray) -> dict:
    """The ActivityNet-style annotation of one rendered video, with the model's hidden structure (warm-ups and
    cool-downs, scene cuts, classes, steps) that the pipeline does not read."""
    return {
        "subset": layout.subset,
        "duration": layout.duration,
        "fps": layout.fps,
        "annotations": [{"segment": [a.start, a.end], "label": a.label} for a in layout.actions],
        # Not read by the pipeline: the model's hidden structure, for tests and plots.
        "hard_negatives": [[list(a.warmup), list(a.cooldown)] for a in layout.actions],
        "scene_cuts": layout.scene_cuts,
        "classes": layout.classes,
        "feature_steps": int(feats.shape[0]),
    }


def write_benchmark(out: Path, layouts: Iterable[VideoLayout], render: Callable[[VideoLayout], np.ndarray],
                    header: dict) -> tuple[Path, dict, int]:
    """Render and save each video's features to OUT/features/<video>.npy, one by one, then write OUT/annotations.json:
    `header`, the layout statistics and the database. Returns the annotation path, the statistics and the bytes of
    features written."""
    feature_dir = out / "features"
    feature_dir.mkdir(parents=True, exist_ok=True)
    done, database, nbytes = [], {}, 0
    for layout in layouts:
        feats = render(layout)
        nbytes += save_features(feature_dir / f"{layout.video}.npy", feats)
        done.append(layout)
        database[layout.video] = database_entry(layout, feats)
    stats = layout_statistics(done)
    annotations = out / "annotations.json"
    annotations.write_text(json.dumps({**header, "stats": stats, "database": database}, indent=1))
    return annotations, stats, nbytes
