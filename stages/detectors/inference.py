"""Single-video inference: from a raw video file to detections with a TrainDetector checkpoint (pure functions;
checkpoints are read by stages/detectors/checkpoint.py).

`tal-pipeline detect` wraps this module. It rebuilds the detector's input exactly as the pipeline did, by
calling the same stage functions with the values of the checkpoint's inference recipe (stages.detectors.recipe,
written by TrainDetector as config["inputs"]):

    raw video -> frames        stages.data.sample_frames.sample_video at recipe.frames.fps, .size
              -> I3D features  stages.data.features.extract_features, recipe.features.window / .stride
    (+BAPG)   -> embeddings    stages.bapg.encoder.embed with checkpoint["encoder"] (or the raw features when
                               recipe.bapg.use_encoder is False)
              -> S             stages.bapg.similarity.similarity_matrix, tiled by recipe.bapg.block
              -> change points stages.bapg.scales.tsc_scales for recipe.bapg.ms, .rates, .penalty, .min_size
                               (one scale each, counts from the video's feature span)
              -> B             stages.bapg.proposal_features.boundary_aware_features with recipe.bapg.groups
                               (and S for the novelty and strength groups), concatenated after the features
    -> detections              stages.detectors.detection.detect on the recipe's TimeGrid, clipped to the
                               video's real (decoded) duration; a detector trained on fixed-length inputs
                               (recipe.detector_input.length) gets the features and B resized as in training,
                               and a class-agnostic one (.class_agnostic) detects its one foreground class.

A detector trained on imported features (ImportFeatures) cannot run on a raw video: its features came from
elsewhere and cannot be recomputed, so that is refused with a clear error (checkpoint.load_checkpoint).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tal_pipeline.stages.data.timegrid import TimeGrid

# pipeline.detector_tasks reads checkpoints through this module
from tal_pipeline.stages.detectors.checkpoint import checkpoint_file, load_checkpoint_file

__all__ = ["ENCODER_DEVICE", "checkpoint_file", "detect_video", "detector_input", "load_checkpoint_file",
           "recipe_grid"]
log = logging.getLogger("pipeline")

# The encoder is a small MLP: always embedded on the CPU, as the SimilarityMatrices stage does by default
# ([SimilarityMatrices] device = cpu). S is stored as float16 and TSC takes exact argmins over it, so a GPU's
# slightly different rounding could move a change point and make the detector's input differ from the run's.
ENCODER_DEVICE = "cpu"


def recipe_grid(recipe) -> TimeGrid:
    """The time grid of the features a recipe makes from a raw video: frames at recipe.frames.fps, windows of
    recipe.features.window frames every .stride."""
    return TimeGrid(recipe.frames.fps, recipe.features.window, recipe.features.stride)


def detector_input(features: np.ndarray, checkpoint: Mapping, video: str) -> tuple[np.ndarray, dict]:
    """The detector's input for one video's I3D features (T, C): the features, + B for a +BAPG detector.

    Returns (x (T, C') float32, {scale name: change points} or {}), exactly as SimilarityMatrices ->
    TSCProposals -> ProposalFeatures and load_feature_dict build it in the pipeline.
    """
    from tal_pipeline.stages.bapg.proposal_features import boundary_aware_features
    from tal_pipeline.stages.bapg.scales import Scales, tsc_scales
    from tal_pipeline.stages.bapg.similarity import similarity_matrix

    recipe = checkpoint["recipe"]
    bapg = recipe.bapg
    if bapg is None:
        return features, {}
    if bapg.use_encoder:
        from tal_pipeline.stages.bapg.encoder import embed

        enc = checkpoint["encoder"]
        embeddings = embed(enc["state"], enc["config"], features, device=ENCODER_DEVICE)  # (T, D)
    else:
        embeddings = features
    S = similarity_matrix(embeddings, block=bapg.block)  # (T, T) float16, tiled as the stage did
    seconds = recipe_grid(recipe).span_seconds(features.shape[0])  # the span TSCProposals counts
    found = tsc_scales(S, seconds, Scales(bapg.ms, bapg.rates, bapg.penalty, bapg.min_size), name=f"video {video!r}")
    B = boundary_aware_features(features, found, bapg.projection_dim, bapg.projection_seed, groups=bapg.groups,
                                similarity=S, name=f"video {video!r}")
    return np.concatenate([features, B], axis=1), dict(found)


def detect_video(path: str | Path, checkpoint: Mapping, device: str = "auto", max_dets: int = 200,
                 nms_sigma: float | None = None, voting_thresh: float = 0.0) -> tuple[str, list[dict], dict]:
    """Detections of one raw video with a loaded checkpoint (load_checkpoint); nms_sigma / voting_thresh: the
    post-processing of stages.detectors.detection.predict_video (the Detect task's).

    Returns (video_id, detections [{"segment": [s, e], "label", "score"}] best first, info). video_id is the
    file stem (checked file-name safe). info: duration, frame / feature counts, change points, device, timings.
    Raises FileNotFoundError / ValueError naming the file for a missing, unreadable or too short video.
    """
    from tal_pipeline.models.i3d_weights import ensure_i3d_weights
    from tal_pipeline.stages.data.features import extract_features, require_one_window, shared_i3d
    from tal_pipeline.stages.data.sample_frames import sample_video
    from tal_pipeline.stages.detectors.detection import detect
    from tal_pipeline.stages.runtime import resolve_device
    from tal_pipeline.storage.paths import check_video_id

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video file not found")
    video = check_video_id(path.stem, str(path))
    cfg = checkpoint["config"]
    recipe = checkpoint["recipe"]
    fps, size = recipe.frames.fps, recipe.frames.size
    window, stride = recipe.features.window, recipe.features.stride
    timings = {}

    t0 = time.perf_counter()
    frames, vinfo = sample_video(path, fps, size, video=video)  # (T, size, size, 3) uint8
    timings["frames_s"] = time.perf_counter() - t0
    require_one_window(video, len(frames), fps, window, str(path), "nothing to detect")

    t0 = time.perf_counter()
    dev = resolve_device(device)
    model = shared_i3d(dev, ensure_i3d_weights(progress=log.info))
    features = extract_features(frames, model, window, stride, device=dev, video=video)  # (T', 1024)
    timings["features_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    x, cps = detector_input(features, checkpoint, video)
    timings["bapg_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    results = detect(cfg["name"], checkpoint["state"], cfg, {video: x}, list(cfg["labels"]), recipe_grid(recipe),
                     {video: float(vinfo.duration)}, max_dets=max_dets, device=str(dev), nms_sigma=nms_sigma,
                     voting_thresh=voting_thresh)
    timings["detect_s"] = time.perf_counter() - t0
    info = {"file": str(path), "duration": float(vinfo.duration), "source_fps": vinfo.source_fps,
            "frames": int(len(frames)), "feature_steps": int(features.shape[0]), "input_channels": int(x.shape[1]),
            "change_points": {str(m): c.tolist() for m, c in cps.items()}, "device": str(dev),
            "timings": {k: round(v, 3) for k, v in timings.items()}}
    return video, results[video], info

