"""A feature-level benchmark of THUMOS14 shape: per-video I3D-like features + ActivityNet-style annotations.

No videos are rendered: each video is a (T, width) float32 array on the time grid of the public
THUMOS14 I3D features (fps 30, window 16, stride 4, i.e. 7.5 steps per second; feature i is the
mean of frames [4i, 4i + 16), centred at (4i + 8)/30 s, stages/data/timegrid.py), so the BAPG chain
(ImportFeatures -> encoder -> similarity -> TSC -> detectors -> evaluation) runs in minutes.

Model of the data (all numbers are fields of :class:`ThumosLikeParams`; norms are L2 norms of
width-dimensional vectors, so they do not depend on the width):

Layout (THUMOS14 shape, from its public annotations; encoded here, never read at run time)
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

import time
from dataclasses import asdict
from pathlib import Path

from tal_pipeline.stages.data.timegrid import feature_step_seconds
from tal_pipeline.synthetic.thumos_like_features import class_directions, render_features, write_benchmark
from tal_pipeline.synthetic.thumos_like_layout import (
    CLASSES,
    FPS,
    STRIDE,
    WINDOW,
    ThumosLikeParams,
    sample_layout,
)


def _readme(out: Path, seed: int, width: int, max_duration: float, counts: dict, stats: dict, seconds: float,
            nbytes: int) -> str:
    ann, feats = out.resolve() / "annotations.json", out.resolve() / "features"
    s = stats
    # In the template a doubled backslash at a line end is a literal one in the README (shell continuation);
    # a single backslash joins two source lines into one README line (keeps the source under 120 columns).
    return f"""THUMOS14-shaped feature-level benchmark (tal-pipeline, synthetic/thumos_like.py)

Made by: tal-pipeline synth --features {out} --videos-train {counts['validation']} --videos-test {counts['test']} \\
    --seed {seed} --width {width} --max-duration {max_duration:g}
(or tal_pipeline.synthetic.thumos_like.generate_thumos_like), deterministic for the seed.

No videos: features/<video>.npy are float32 (T, {width}) arrays on the THUMOS14 I3D time grid
(fps 30, window 16, stride 4: {1 / feature_step_seconds(FPS, STRIDE):g} steps per second, \
feature i centred at (4i + 8)/30 s).
annotations.json is ActivityNet style: subset "validation" (train) / "test", duration, fps 30,
20 THUMOS14 class names; extra keys (hard_negatives = [warm-up, cool-down] per action, scene_cuts,
classes) are for inspection and ignored by the pipeline. The data model (scenes, drift, camera
motion, class appearance + motion, warm-ups/cool-downs with the appearance but not the motion,
noise) is described in the docstring of synthetic/thumos_like.py.

Statistics ({s['videos']} videos, {s['instances']} actions, {s['total_hours']:.2f} h; \
generated in {seconds:.1f} s, {nbytes / 1e6:.0f} MB of features):
  video duration, s: mean {s['video_duration_s']['mean']:.1f} / median {s['video_duration_s']['median']:.1f} \
/ min {s['video_duration_s']['min']:.1f} / max {s['video_duration_s']['max']:.1f}
  actions per video: mean {s['actions_per_video']['mean']:.1f} / median {s['actions_per_video']['median']:.0f} \
/ min {s['actions_per_video']['min']:.0f} / max {s['actions_per_video']['max']:.0f}
  action length, s: mean {s['action_len_s']['mean']:.2f} / median {s['action_len_s']['median']:.2f} \
/ min {s['action_len_s']['min']:.1f} / max {s['action_len_s']['max']:.1f}
  share of time covered by actions: mean {s['foreground_fraction']['mean']:.2f} \
/ median {s['foreground_fraction']['median']:.2f}
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
    counts = {"validation": videos_train, "test": videos_test}
    layouts = (sample_layout(seed, subset, index, max_duration, p)
               for subset, n in counts.items() for index in range(n))
    header = {"version": "thumos-like-1", "taxonomy": CLASSES, "seed": seed, "width": width,
              "max_duration": max_duration, "time_grid": {"fps": FPS, "window": WINDOW, "stride": STRIDE},
              "params": asdict(p)}
    out = Path(out)
    annotations, stats, nbytes = write_benchmark(
        out, layouts, lambda layout: render_features(layout, seed, width, p, directions), header)
    seconds = time.perf_counter() - t0
    (out / "README.txt").write_text(_readme(out, seed, width, max_duration, counts, stats, seconds, nbytes))
    return annotations
