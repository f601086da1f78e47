"""Single-video inference: from a raw video file to detections with a TrainDetector checkpoint (pure functions).

`tal-pipeline detect` wraps this module. It rebuilds the detector's input exactly as the pipeline did, by
calling the same stage functions with the values of the checkpoint's inference recipe (stages.recipe, written
by TrainDetector as config["inputs"]):

    raw video -> frames        stages.sample_frames.sample_video at recipe.frames.fps, .size
              -> I3D features  stages.features.extract_features, recipe.features.window / .stride
    (+BAPG)   -> embeddings    stages.encoder.embed with checkpoint["encoder"] (or the raw features when
                               recipe.bapg.use_encoder is False)
              -> S             stages.similarity.similarity_matrix, tiled by recipe.bapg.block
              -> change points stages.scales.tsc_scales for recipe.bapg.ms, .rates, .penalty, .min_size
                               (one scale each, counts from the video's feature span)
              -> B             stages.proposal_features.boundary_aware_features with recipe.bapg.groups (and S
                               for the novelty and strength groups), concatenated after the features
    -> detections              stages.detection.detect on the recipe's TimeGrid, clipped to the video's
                               real (decoded) duration; a detector trained on fixed-length inputs
                               (recipe.detector_input.length) gets the features and B resized as in training,
                               and a class-agnostic one (.class_agnostic) detects its one foreground class.

The checkpoint is loaded with torch.load(..., weights_only=True) only. A detector trained on imported
features (ImportFeatures) cannot run on a raw video: its features came from elsewhere and cannot be
recomputed, so that is refused with a clear error.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tal_pipeline.stages.data.timegrid import TimeGrid

log = logging.getLogger("pipeline")

CHECKPOINT_NAME = "checkpoint.pt"
# The encoder is a small MLP: always embedded on the CPU, as the SimilarityMatrices stage does by default
# ([SimilarityMatrices] device = cpu). S is stored as float16 and TSC takes exact argmins over it, so a GPU's
# slightly different rounding could move a change point and make the detector's input differ from the run's.
ENCODER_DEVICE = "cpu"


# --------------------------------------------------------------------------------------------- checkpoint

def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint file of a TrainDetector artifact folder (or the file itself)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / CHECKPOINT_NAME
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no {CHECKPOINT_NAME} in the folder {path} (expected a TrainDetector "
                                    "artifact folder, detector-<hash>/, or its checkpoint.pt)")
    elif not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint not found")
    return p


def _require(mapping: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")


def _load_error(exc: BaseException) -> str:
    """The informative line of a torch.load error (not its advice to retry with weights_only=False)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # "...WeightsUnpickler error: \n\nUnsupported operand 73\n\nCheck the..."
        detail = [ln.strip() for ln in text.split("WeightsUnpickler error:", 1)[1].splitlines() if ln.strip()]
        return (detail[0] if detail else "refused by the weights-only unpickler") + \
            " (not a checkpoint, or it holds objects other than tensors and plain containers)"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines and "weights_only" not in lines[0] else type(exc).__name__


def load_checkpoint_file(file: str | Path) -> dict:
    """A TrainDetector checkpoint file {"state", "config", "recipe", optional "encoder"}, loaded with
    weights_only=True and validated; "recipe" is config["inputs"] read as an InferenceRecipe.

    The one loader for checkpoints (Detect and `tal-pipeline detect`). Raises ValueError naming the file.
    """
    import pickle

    import torch

    from tal_pipeline.models.detector_registry import require_resolved
    from tal_pipeline.stages.detectors.recipe import InferenceRecipe
    from tal_pipeline.storage.manifest import verified_file

    file = verified_file(file)  # against its folder's SHA256SUMS: a damaged checkpoint names itself
    if file.stat().st_size == 0:
        raise ValueError(f"{file}: checkpoint file is empty (0 bytes)")
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{file}: not a readable torch checkpoint (loaded with weights_only=True): "
                         f"{_load_error(exc)}") from None
    where = f"checkpoint {file}"
    _require(ckpt, ("state", "config"), where)
    cfg = ckpt["config"]
    _require(cfg, ("name", "labels", "use_bapg", "in_channels", "num_classes"), f"{where}: config")
    if not isinstance(cfg.get("model"), Mapping):
        raise ValueError(f"{where}: config has no recorded detector options ('model'); it was written before "
                         "checkpoints recorded their settings: retrain it (--TrainDetector-force)")
    try:  # the recorded settings are built as they are: each option exactly once, none filled in from today's code
        require_resolved(str(cfg["name"]), cfg["model"], cfg.get("fusion"), bapg=bool(cfg["use_bapg"]))
    except ValueError as exc:
        raise ValueError(f"{where}: config: {exc}; it was written by another version (the fusion's lr_scale, for "
                         "one, was once the training setting fusion_lr_scale): retrain it (--TrainDetector-force)"
                         ) from None
    if "inputs" not in cfg:
        raise ValueError(f"{where}: config has no 'inputs' (how the detector's input was made from a video); "
                         "it was written before TrainDetector recorded its inference recipe: retrain it "
                         "(--TrainDetector-force)")
    if len(cfg["labels"]) != int(cfg["num_classes"]):
        raise ValueError(f"{where}: {len(cfg['labels'])} labels but num_classes = {cfg['num_classes']}")
    ckpt["recipe"] = InferenceRecipe.from_dict(cfg["inputs"], bool(cfg["use_bapg"]), where)
    recorded = ckpt["recipe"].detector_input
    trained = (cfg.get("input_length"), bool(cfg.get("class_agnostic", False)))
    if (recorded.length, recorded.class_agnostic) != trained:
        raise ValueError(f"{where}: the recipe's detector input (length {recorded.length}, class_agnostic "
                         f"{recorded.class_agnostic}) is not what the detector was trained on (input_length "
                         f"{trained[0]}, class_agnostic {trained[1]})")
    if recorded.class_agnostic and int(cfg["num_classes"]) != 1:
        raise ValueError(f"{where}: a class-agnostic detector with {cfg['num_classes']} classes (expected 1)")
    return ckpt


def load_checkpoint(path: str | Path) -> dict:
    """A TrainDetector checkpoint (load_checkpoint_file) that can run on a raw video.

    path: the artifact folder or its checkpoint.pt. Loaded with weights_only=True (no arbitrary pickle).
    Raises FileNotFoundError / ValueError naming the file.
    """
    file = checkpoint_file(path)
    ckpt = load_checkpoint_file(file)
    where = f"checkpoint {file}"
    ckpt["recipe"].require_raw_video_inference(where)
    if ckpt["recipe"].bapg is not None and ckpt["recipe"].bapg.use_encoder:
        _require(ckpt.get("encoder"), ("state", "config"),
                 f"{where}: 'encoder' (a +BAPG detector whose similarity used the contrastive encoder)")
    return ckpt


def checkpoint_info(checkpoint: Mapping, path: str | Path | None = None) -> dict:
    """What the results JSON records about the checkpoint (external_data)."""
    cfg = checkpoint["config"]
    info = {"detector": cfg["name"], "bapg": bool(cfg["use_bapg"]), "labels": list(cfg["labels"]),
            "seed": cfg.get("seed"), "weights": cfg.get("weights"), "inputs": cfg.get("inputs"),
            "train_videos": len(cfg.get("train_videos") or [])}
    if path is not None:
        info["checkpoint"] = str(Path(path).resolve())
    return info


# --------------------------------------------------------------------------------------------- inference

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


# --------------------------------------------------------------------------------------------- plot

def plot_detections(path: str | Path, video: str, detections: list[dict], duration: float, top: int = 10,
                    title: str = "") -> None:
    """The top-`top` detections of one video on a time line, one row per detection, opacity = score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dets = sorted(detections, key=lambda d: -float(d["score"]))[:top]
    labels = sorted({d["label"] for d in dets})
    colour = {lab: plt.cm.tab10(i % 10) for i, lab in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(dets), 1) + 1.4))
    for i, d in enumerate(dets):
        s, e = d["segment"]
        score = min(max(float(d["score"]), 0.0), 1.0)
        ax.barh(i, e - s, left=s, height=0.7, color=colour[d["label"]], alpha=0.15 + 0.85 * score,
                edgecolor="k", lw=0.3)
        ax.text(e, i, f" {d['label']} {score:.2f}", va="center", fontsize=6)
    ax.set_yticks(range(len(dets)), [f"#{i + 1}" for i in range(len(dets))], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(float(duration), 1e-6))
    ax.set_xlabel("seconds")
    if labels:
        handles = [plt.Rectangle((0, 0), 1, 1, color=colour[lab]) for lab in labels]
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.text(0.5, 0.5, "no detections", transform=ax.transAxes, ha="center", va="center")
    ax.set_title(title or f"{video}: top-{top} detections (opacity = score)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
