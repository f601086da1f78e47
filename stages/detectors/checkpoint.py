"""TrainDetector checkpoints: the one validated reader (the Detect task and `tal-pipeline detect`).

A checkpoint is {"state": model weights, "config": the detector's resolved settings with its inference recipe
under "inputs", optional "encoder": the contrastive encoder's {"state", "config"}}; it is loaded with
torch.load(..., weights_only=True) only. Every error names the file.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

CHECKPOINT_NAME = "checkpoint.pt"
# what train_detector's config_dict and TrainDetector record, and detection reads
CONFIG_KEYS = ("name", "labels", "bapg", "in_channels", "bapg_channels", "num_classes", "model", "fusion", "train",
               "max_seq_len", "input_length", "class_agnostic", "inputs")
RETRAIN = "; not a checkpoint of this version: retrain it (--TrainDetector-force)"


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


def _require(mapping: Any, keys: tuple[str, ...], where: str, hint: str = "") -> None:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(mapping).__name__}{hint}")
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}{hint}")


def _load_error(exc: BaseException) -> str:
    """The informative line of a torch.load error (not its advice to retry with weights_only=False)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # "...WeightsUnpickler error: \n\nUnsupported operand 73\n\nCheck the..."
        detail = [ln.strip() for ln in text.split("WeightsUnpickler error:", 1)[1].splitlines() if ln.strip()]
        return (detail[0] if detail else "refused by the weights-only unpickler") + \
            " (not a checkpoint, or it holds objects other than tensors and plain containers)"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines and "weights_only" not in lines[0] else type(exc).__name__


def _read(file: Path) -> Any:
    """torch.load(file, weights_only=True), its errors as one ValueError naming the file."""
    import pickle

    import torch

    if file.stat().st_size == 0:
        raise ValueError(f"{file}: checkpoint file is empty (0 bytes)")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{file}: not a readable torch checkpoint (loaded with weights_only=True): "
                         f"{_load_error(exc)}") from None


def _check_config(cfg: Any, where: str) -> None:
    """The detector's recorded settings: every key, each option resolved (built as recorded, none filled in)."""
    from tal_pipeline.models.detector_registry import require_resolved

    _require(cfg, CONFIG_KEYS, f"{where}: config", RETRAIN)
    try:
        require_resolved(str(cfg["name"]), cfg["model"], cfg.get("fusion"), bapg=bool(cfg["bapg"]))
    except ValueError as exc:
        raise ValueError(f"{where}: config: {exc}{RETRAIN}") from None
    if len(cfg["labels"]) != int(cfg["num_classes"]):
        raise ValueError(f"{where}: {len(cfg['labels'])} labels but num_classes = {cfg['num_classes']}")


def _check_detector_input(ckpt: Mapping, where: str) -> None:
    """The recipe's detector input is the one the detector was trained on."""
    cfg, recorded = ckpt["config"], ckpt["recipe"].detector_input
    trained = (cfg["input_length"], bool(cfg["class_agnostic"]))
    if (recorded.length, recorded.class_agnostic) != trained:
        raise ValueError(f"{where}: the recipe's detector input (length {recorded.length}, class_agnostic "
                         f"{recorded.class_agnostic}) is not what the detector was trained on (input_length "
                         f"{trained[0]}, class_agnostic {trained[1]})")
    if recorded.class_agnostic and int(cfg["num_classes"]) != 1:
        raise ValueError(f"{where}: a class-agnostic detector with {cfg['num_classes']} classes (expected 1)")


def load_checkpoint_file(file: str | Path) -> dict:
    """A TrainDetector checkpoint file {"state", "config", "recipe", optional "encoder"}, loaded with
    weights_only=True and validated; "recipe" is config["inputs"] read as an InferenceRecipe.

    Raises ValueError naming the file.
    """
    from tal_pipeline.stages.detectors.recipe import InferenceRecipe
    from tal_pipeline.storage.manifest import verified_file

    file = verified_file(file)  # against its folder's SHA256SUMS: a damaged checkpoint names itself
    ckpt = _read(file)
    where = f"checkpoint {file}"
    _require(ckpt, ("state", "config"), where)
    _check_config(ckpt["config"], where)
    ckpt["recipe"] = InferenceRecipe.from_dict(ckpt["config"]["inputs"], bool(ckpt["config"]["bapg"]), where)
    _check_detector_input(ckpt, where)
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
    info = {"detector": cfg["name"], "bapg": bool(cfg["bapg"]), "labels": list(cfg["labels"]),
            "seed": cfg.get("seed"), "weights": cfg.get("weights"), "inputs": cfg.get("inputs"),
            "train_videos": len(cfg.get("train_videos") or [])}
    if path is not None:
        info["checkpoint"] = str(Path(path).resolve())
    return info
