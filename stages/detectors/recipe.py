"""The inference recipe: how a detector's input was made from a raw video, recorded in its checkpoint.

TrainDetector writes it (config["inputs"]) from the specs of the stages upstream of the detector (pipeline.specs);
Detect and `tal-pipeline detect` read it back through `InferenceRecipe.from_dict`, the one validated reader, and
single-video inference (stages.detectors.inference) rebuilds frames -> I3D features -> (+BAPG) S -> change points -> B
with exactly these values. Every field is required when read: a default here would silently disagree with the
pipeline's on the day one of them changes, so a checkpoint without a field is refused (retrain it).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

# Features that single-video inference can recompute from a raw video (models/i3d_weights.py).
SUPPORTED_WEIGHTS = ("i3d-rgb-k400",)


def _section(data: Any, cls, where: str):
    """One recipe section as `cls`, every field present and of the field's type (ValueError naming `where`)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = [f.name for f in fields(cls)]
    missing = [n for n in names if n not in data]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing} (written by an older version: retrain the detector, "
                         "--TrainDetector-force)")
    values = {}
    for f in fields(cls):
        value = data[f.name]
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        optional = kind.endswith(" | None")
        base = kind.removesuffix(" | None")
        try:
            if optional and value is None:
                pass
            elif base == "bool":
                if not isinstance(value, bool):
                    raise TypeError
            elif base.startswith("tuple[str"):
                if isinstance(value, str | bytes) or not all(isinstance(v, str) for v in value):
                    raise TypeError
                value = tuple(value)
            elif base.startswith("tuple"):
                value = tuple(float(v) if "float" in base else int(v) for v in value)
            elif base in ("int", "float", "str"):
                if isinstance(value, bool) and base != "str":  # True would pass as 1
                    raise TypeError
                value = {"int": int, "float": float, "str": str}[base](value)
                if base == "int" and value != data[f.name]:
                    raise TypeError
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {f.name} = {data[f.name]!r} is not of type {kind}") from None
        values[f.name] = value
    return cls(**values)


@dataclass(frozen=True)
class FramesRecipe:
    """SampleFrames: sampling rate (frames per second) and output frame size (short side, centre crop)."""

    fps: float
    size: int


@dataclass(frozen=True)
class FeaturesRecipe:
    """The features task (ExtractFeatures | ImportFeatures), its window / stride in frames and the I3D weights
    (None for imported features)."""

    task: str
    window: int
    stride: int
    weights: str | None


@dataclass(frozen=True)
class BapgRecipe:
    """SimilarityMatrices -> TSCProposals -> ProposalFeatures of a +BAPG detector."""

    source: str  # tsc | raw | random | oracle (stages.bapg.proposals.BOUNDARY_SOURCES)
    # The contrastive encoder made the boundaries (tsc; random: its counts): False for raw (S of the features
    # themselves) and oracle (no S at all).
    use_encoder: bool
    # Tiling of S: it can change the last bit of a float16 entry, so inference tiles the same way (None: no S).
    block: int | None
    ms: tuple[int, ...]
    rates: tuple[float, ...]
    penalty: float
    min_size: int
    max_union: int
    projection_dim: int
    projection_seed: int
    # The channel groups of B (stages.bapg.proposal_features.GROUPS, in their order).
    groups: tuple[str, ...]


@dataclass(frozen=True)
class DetectorInputRecipe:
    """The detector stage's own input: every video's features (and B) linearly resized to `length` steps, its time
    grid resampled with them (None: the native grid; stages.detectors.resize), and whether the detector has one
    foreground class (class_agnostic: its classes come from video-level scores, stages.classification)."""

    length: int | None
    class_agnostic: bool



@dataclass(frozen=True)
class InferenceRecipe:
    """config["inputs"] of a TrainDetector checkpoint; frames is None for imported features, bapg for a
    baseline."""

    features: FeaturesRecipe
    frames: FramesRecipe | None = None
    bapg: BapgRecipe | None = None
    detector_input: DetectorInputRecipe = DetectorInputRecipe(length=None, class_agnostic=False)  # native, classes

    def to_dict(self) -> dict:
        """JSON-able and loadable with torch.load(weights_only=True): plain dicts, lists and scalars."""
        out: dict = {"features": asdict(self.features), "detector_input": asdict(self.detector_input)}
        if self.frames is not None:
            out["frames"] = asdict(self.frames)
        if self.bapg is not None:
            out["bapg"] = {**asdict(self.bapg), "ms": list(self.bapg.ms), "rates": list(self.bapg.rates),
                           "groups": list(self.bapg.groups)}
        return out

    @classmethod
    def from_dict(cls, data: Any, bapg: bool, where: str = "checkpoint") -> InferenceRecipe:
        """The recipe recorded as config["inputs"], validated; ValueError naming `where` and the key."""
        where = f"{where}: config['inputs']"
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
        features = _section(data.get("features"), FeaturesRecipe, f"{where}['features']")
        frames = _section(data["frames"], FramesRecipe, f"{where}['frames']") if "frames" in data else None
        if features.task == "ExtractFeatures" and frames is None:
            raise ValueError(f"{where}: features extracted from frames, but no 'frames' section")
        recipe = _section(data["bapg"], BapgRecipe, f"{where}['bapg'] (a +BAPG detector)") if bapg else None
        if recipe is not None:
            from tal_pipeline.stages.bapg.proposal_features import normalise_groups

            name = f"{where}['bapg']"
            try:
                groups = normalise_groups(recipe.groups, f"{name}: groups")
            except ValueError as exc:
                raise ValueError(f"{exc} (written by another version: retrain the detector)") from None
            if groups != recipe.groups:
                raise ValueError(f"{name}: groups {list(recipe.groups)} are not in the channel order {list(groups)}")
        detector_input = _section(data.get("detector_input"), DetectorInputRecipe, f"{where}['detector_input']")
        if detector_input.length is not None and detector_input.length < 1:
            raise ValueError(f"{where}['detector_input']: length must be >= 1 or None, got {detector_input.length}")
        return cls(features=features, frames=frames, bapg=recipe, detector_input=detector_input)

    def require_raw_video_inference(self, where: str = "checkpoint") -> None:
        """ValueError unless this input can be rebuilt from a raw video (single-video inference)."""
        from tal_pipeline.stages.bapg.proposals import SIMILARITY_SOURCES

        if self.frames is None:
            raise ValueError(f"{where}: the detector was trained on imported features ({self.features.task}), which "
                             "cannot be recomputed from a raw video; run it on those features with the pipeline's "
                             "Detect task instead, or train a detector on ExtractFeatures")
        if self.features.weights not in SUPPORTED_WEIGHTS:
            raise ValueError(f"{where}: features were made with weights {self.features.weights!r}; only "
                             f"{list(SUPPORTED_WEIGHTS)} can be recomputed here")
        if self.bapg is not None and self.bapg.source not in SIMILARITY_SOURCES:
            raise ValueError(f"{where}: a +BAPG ablation detector (boundaries from {self.bapg.source!r}) cannot run "
                             "on a raw video: its boundaries are not computed from the video")
        if self.bapg is not None and self.bapg.block is None:
            raise ValueError(f"{where}: config['inputs']['bapg'] records no similarity tiling (block), which TSC on "
                             "a raw video needs")
