"""A feature-level benchmark of ActivityNet-1.3 shape: per-video TSP/I3D-like features + ActivityNet-style annotations.

The THUMOS14-shaped benchmark's data model (synthetic/thumos_like.py: scenes with scene cuts, drift, camera motion,
class appearance and motion, warm-ups/cool-downs that share the appearance but not the motion, correlated noise)
with ActivityNet's layout (numbers: :class:`AnetLikeParams`, synthetic/anet_like_layout.py):

- 200 classes, one per video; the first 200 videos of each subset cycle through all of them.
- Duration: log-normal, median 100 s, sigma 0.55 (mean ~117 s, std ~68 s, as ActivityNet 1.3), 10 s .. 600 s.
- 1 instance (70 %) or 2 (30 %), covering together Beta(3, 3) of the video (mean 0.5, within 0.15 .. 0.9); two
  instances split that time 30/70 .. 70/30. Each has a warm-up and a cool-down of 0.5-2 s (background with the
  action's appearance); the background between them is uniform spacings of the free time.
- Scene cuts: on average one per 20 s of video, in the background only (not within 0.3 s of an action).
- Subsets training / validation / testing in ActivityNet 1.3's proportions (10,024 / 4,926 / 5,044: ~50/25/25 %);
  every subset is annotated (papers train on training and evaluate on validation).
- Time grid: fps 15, window 16, stride 16 (the common ActivityNet TSP features of ActionFormer and TriDet):
  feature i is the mean of frames [16i, 16i + 16), centred at (16i + 8) / 15 s, 0.9375 steps per second.

Features: with 200 classes there are more class directions than dimensions at the usual widths, so the class-specific
parts are random unit vectors orthogonal to the three shared directions (mean, shared appearance, generic motion)
instead of an orthonormal set: classes are told apart by direction, not by orthogonal subspaces, and any width from 16
works (16 for the 20,000-video scheduling run, 256 by default). Deterministic for a seed: a video's layout depends on
(seed, subset, index), its features also on the width.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from tal_pipeline.stages.data.timegrid import feature_step_seconds
from tal_pipeline.synthetic.anet_like_layout import (
    ANET_SHAPE,
    CLASSES,
    FPS,
    STRIDE,
    SUBSETS,
    WINDOW,
    AnetLikeParams,
    sample_anet_layout,
    subset_counts,
)
from tal_pipeline.synthetic.thumos_like_features import Directions, render_features, write_benchmark
from tal_pipeline.synthetic.thumos_like_layout import ThumosLikeParams

MIN_WIDTH = 16


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def anet_class_directions(seed: int, width: int, params: ThumosLikeParams | None = None) -> Directions:
    """Three orthonormal shared directions and, per class, random unit appearance and motion parts orthogonal to
    them (not to each other), mixed as the THUMOS14-shaped model mixes its orthonormal ones."""
    p = params or ThumosLikeParams()
    if width < MIN_WIDTH:
        raise ValueError(f"--width must be at least {MIN_WIDTH} for the ActivityNet-shaped benchmark, got {width}")
    rng = np.random.default_rng([seed, 7_000_011])
    q, _ = np.linalg.qr(rng.normal(size=(width, 3)))
    shared = q.T  # (3, D) orthonormal rows: mean, shared appearance, generic motion

    def specific() -> np.ndarray:
        g = rng.normal(size=(len(CLASSES), width))
        return _unit(g - (g @ shared.T) @ shared)

    app_spec, mot_spec = specific(), specific()
    a, m = p.appearance_shared, p.motion_generic
    return Directions(shared[0], shared[1], a * shared[1] + math.sqrt(1 - a * a) * app_spec, app_spec,
                      shared[2], m * shared[2] + math.sqrt(1 - m * m) * mot_spec, mot_spec)


def feature_params(params: AnetLikeParams) -> ThumosLikeParams:
    """The THUMOS14-shaped model's feature numbers, with the motion noise of 201 motion directions."""
    return replace(ThumosLikeParams(), motion_noise=params.motion_noise)


def _readme(out: Path, videos: int, seed: int, width: int, counts: dict, stats: dict, seconds: float,
            nbytes: int) -> str:
    ann, feats = out.resolve() / "annotations.json", out.resolve() / "features"
    s = stats
    return f"""ActivityNet-1.3-shaped feature-level benchmark (tal-pipeline, synthetic/anet_like.py)

Made by: tal-pipeline synth --features {out} --preset anet --videos {videos} --seed {seed} --width {width}
(or tal_pipeline.synthetic.anet_like.generate_anet_like), deterministic for the seed.

No videos: features/<video>.npy are float32 (T, {width}) arrays on the time grid of the common ActivityNet TSP
features (fps 15, window 16, stride 16: {1 / feature_step_seconds(FPS, STRIDE):g} steps per second, feature i \
centred at (16i + 8)/15 s).
annotations.json is ActivityNet style: subsets {' / '.join(f'"{k}" ({v})' for k, v in counts.items())}, duration,
fps 15, 200 classes, one per video; extra keys (hard_negatives, scene_cuts, classes) are for inspection and ignored
by the pipeline. The data model is described in the docstring of synthetic/anet_like.py.

Statistics ({s['videos']} videos, {s['instances']} actions, {s['total_hours']:.2f} h; \
generated in {seconds:.1f} s, {nbytes / 1e6:.0f} MB of features):
  video duration, s: mean {s['video_duration_s']['mean']:.1f} / median {s['video_duration_s']['median']:.1f} \
/ min {s['video_duration_s']['min']:.1f} / max {s['video_duration_s']['max']:.1f}
  actions per video: mean {s['actions_per_video']['mean']:.2f} / min {s['actions_per_video']['min']:.0f} \
/ max {s['actions_per_video']['max']:.0f}
  action length, s: mean {s['action_len_s']['mean']:.1f} / median {s['action_len_s']['median']:.1f} \
/ min {s['action_len_s']['min']:.1f} / max {s['action_len_s']['max']:.1f}
  share of time covered by actions: mean {s['foreground_fraction']['mean']:.2f} \
/ median {s['foreground_fraction']['median']:.2f}
  classes present: {s['classes_present']} of {len(CLASSES)}

Run the pipeline on it (from the project folder, where luigi.cfg is; or `tal-pipeline run FullRun ...`):
  luigi --module pipeline FullRun --dataset-preset anet --dataset-features {feats} --dataset-annotations {ann} \\
      --paths-workdir runs/anet_like
(the anet preset carries this grid, fps {FPS:g}, window {WINDOW}, stride {STRIDE}, and the subsets training /
validation: no other grid or subset flag)
"""


def generate_anet_like(out: str | Path, videos: int = 1000, seed: int = 0, width: int = 256,
                       params: AnetLikeParams | None = None) -> Path:
    """Write OUT/features/<video>.npy, OUT/annotations.json and OUT/README.txt; return the annotation path.

    `videos` over the three subsets in ActivityNet 1.3's proportions (1,000: the benchmark; 20,000: the scale run,
    best at a small width). Videos are generated and written one by one, each in a few vectorised numpy calls.
    """
    p = params or AnetLikeParams()
    counts = subset_counts(videos)
    t0 = time.perf_counter()
    fp = feature_params(p)
    directions = anet_class_directions(seed, width, fp)
    layouts = (sample_anet_layout(seed, subset, index, p) for subset in SUBSETS for index in range(counts[subset]))
    header = {"version": "anet-like-1", "taxonomy": CLASSES, "seed": seed, "width": width,
              "time_grid": {"fps": FPS, "window": WINDOW, "stride": STRIDE}, "subsets": counts, "params": asdict(p)}
    out = Path(out)
    annotations, stats, nbytes = write_benchmark(
        out, layouts, lambda layout: render_features(layout, seed, width, fp, directions, shape=ANET_SHAPE), header)
    seconds = time.perf_counter() - t0
    (out / "README.txt").write_text(_readme(out, videos, seed, width, counts, stats, seconds, nbytes))
    return annotations
