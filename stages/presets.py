"""Dataset presets: the recipe values that differ between a THUMOS14-style and an ActivityNet-style run.

`[dataset] preset = thumos14` (the default) holds the pipeline's own defaults (docs/method.md §1-§10).
`preset = anet` is ActionFormer's ActivityNet
recipe (its configs/anet_i3d.yaml; docs/method.md §11):

- every video's features linearly resized to 192 steps before the detector (training settings `input_length`
  and `max_seq_len`), each video's TimeGrid resampled with them so that detections map back to seconds exactly;
- class-agnostic detection (training setting `class_agnostic`: one foreground class), the classes coming from a
  video-level classifier (ClassifyVideos) fused top-2 with score sqrt(class score x segment score);
- tIoU thresholds 0.5:0.05:0.95 for the evaluation;
- Gaussian Soft-NMS with sigma 0.75, score threshold 0.001, the top 2000 candidates, segment voting at tIoU 0.9
  and at most 100 detections per video (before the top-2 fusion makes them 200);
- BAPG's change points at 0.5, 1 and 2 per minute (not ActionFormer's: chosen for 2-minute videos with 1-2 long
  actions on training videos; THUMOS14's 8, 16 and 32 give 16-64 change points to a video of ~110 steps);
- per-detector settings from each reference's ActivityNet config (ANET_DETECTORS below).

Each preset also carries the grid of the public features it is made for (ImportFeatures' window, stride and fps
unless given, and checked against every video's annotated duration: stages/data/feature_span.py) and the
dataset's subset names (--dataset-train-subset / --dataset-test-subset unless given): thumos14 the THUMOS14 I3D
grid (window 16, stride 4, each video's fps) and the pipeline's train / test (THUMOS14's own annotation files name
them validation / test: give those); anet the ActivityNet TSP grid (15 fps, window 16, stride 16) and
ActivityNet's training / validation.

A value the user sets explicitly (a detector's `train` JSON key, --Evaluate-tiou-thresholds, --Detect-max-dets,
--Detect-nms-sigma, --Detect-voting-thresh, --TSCProposals-rates, --ImportFeatures-window / -stride / -fps, the
subsets) always wins over the preset's. Plain data: no luigi, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

THUMOS14_TIOUS = (0.3, 0.4, 0.5, 0.6, 0.7)
ANET_TIOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.5, 0.55, ..., 0.95


@dataclass(frozen=True)
class FeatureGrid:
    """The time grid of a public feature set: frames per window, frames between windows, frame rate (None: each
    video's own, from the annotations)."""

    name: str
    window: int
    stride: int
    fps: float | None = None

    def describe(self) -> str:
        fps = "each video's fps" if self.fps is None else f"{self.fps:g} fps"
        return f"{self.name} (window {self.window}, stride {self.stride}, {fps})"


THUMOS14_I3D = FeatureGrid("THUMOS14 I3D", 16, 4)
ANET_TSP = FeatureGrid("ActivityNet TSP", 16, 16, 15.0)


@dataclass(frozen=True)
class Preset:
    name: str
    # Training settings laid under a detector's own `train` JSON (stages.detectors.training.DEFAULT_TRAIN keys).
    train: dict[str, Any] = field(default_factory=dict)
    tiou_thresholds: tuple[float, ...] = THUMOS14_TIOUS
    # Detect: detections kept per video, Soft-NMS sigma (None: the detector's own) and segment voting (0: off).
    max_dets: int = 200
    nms_sigma: float | None = None
    voting_thresh: float = 0.0
    # Detectors whose own post-processing the preset's NMS leaves alone: TadTR's set prediction has no
    # duplicates to suppress (its reference runs without NMS).
    nms_exempt: tuple[str, ...] = ()
    # Evaluate: detections kept per video (after the top-2 class fusion of a class-agnostic detector).
    eval_max_dets: int = 200
    # TSCProposals: change points per minute of video, one scale each, unless --TSCProposals-rates is given.
    # thumos14: chosen on training videos' proposal recall (docs/method.md §3); anet: chosen on the
    # ActivityNet-shaped benchmark's cross-fitted training videos by change-point F1 (docs/method.md §11).
    tsc_rates: tuple[float, ...] = (8, 16, 32)
    # ImportFeatures: the grid of the public features the preset is made for; the (train, test) subset names.
    features: FeatureGrid = THUMOS14_I3D
    subsets: tuple[str, str] = ("train", "test")
    # Per-detector settings of this dataset (see DETECTOR_SETTINGS below): {detector: {"model" | "train" | "post":
    # option names}}, whose values are the detector's published recipe for this preset.
    detectors: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Per-detector dataset settings. The options of each reference's ActivityNet config that are about
# the data rather than the training budget (losses, position encoding, Trident bins, SGP window, post-processing),
# applied on this preset under either recipe (stages.detectors.recipes): the small recipe keeps its own width,
# schedule and the preset's 192-step resize; the published one has them all already. Their values, each with its
# reference file, are in stages/detectors/published_recipes.py. TriDet's own input mode (the native grid padded to
# 768 steps) is its published recipe; under the small one it is `--tridet-train '{"input_length": null,
# "max_seq_len": 768}'`: which suits it better is for a benchmark run to measure.
ANET_DETECTORS: dict[str, dict[str, tuple[str, ...]]] = {
    "actionformer": {"model": ("abs_pe", "label_smoothing", "reg_weight", "topk_per_level", "min_duration"),
                     "post": ("max_dets", "nms_sigma", "voting_thresh")},
    "tridet": {"model": ("window", "k", "num_bins", "iou_weight_power", "input_noise", "sgp_init_std", "abs_pe",
                         "label_smoothing", "topk_per_level", "min_duration"),
               "post": ("max_dets", "nms_sigma", "voting_thresh")},
    "afsd": {"post": ("nms_sigma",)},
}
# ---------------------------------------------------------------------------------------------------------------

PRESETS: dict[str, Preset] = {
    "thumos14": Preset("thumos14"),
    "anet": Preset("anet", train={"input_length": 192, "max_seq_len": 192, "class_agnostic": True},
                   tiou_thresholds=ANET_TIOUS, max_dets=100, nms_sigma=0.75, voting_thresh=0.9,
                   nms_exempt=("tadtr",), eval_max_dets=200, tsc_rates=(0.5, 1, 2), features=ANET_TSP,
                   subsets=("training", "validation"), detectors=ANET_DETECTORS),
}


def get_preset(name: str) -> Preset:
    """The preset called `name` (ValueError naming the known ones)."""
    if name not in PRESETS:
        raise ValueError(f"unknown dataset preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]
