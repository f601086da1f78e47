"""One frozen spec per stage: exactly the values that shape its artifact, resolved once.

A task builds its spec from its luigi parameters (luigi.cfg and the command line), the dataset preset and the
detector recipe, with every default applied (`spec()` of each task in pipeline/*_tasks.py calls a builder here).
The artifact path is <stage>-<hash of the canonical spec and of the upstream artifacts' hashes>
(pipeline.hashing.spec_hash), so numbers hash by value (8 and 8.0 alike) and nothing else enters a path.
Downstream tasks and the inference recipe read upstream specs, never the parameters that made them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.hashing import plain
from tal_pipeline.stages.bapg.proposal_features import PROJECTION_SEED, channel_layout, normalise_groups
from tal_pipeline.stages.bapg.scales import Scales
from tal_pipeline.stages.detectors.recipe import FramesRecipe

I3D_WEIGHTS = "i3d-rgb-k400"  # Kinetics-400 RGB I3D (models/i3d_weights.py)
I3D_WIDTH = 1024  # models.i3d.FEATURE_DIM, written out so that building a spec loads no torch (test_specs checks)

# SampleFrames' spec is the inference recipe's frames section: sampling rate (frames per second), frame size.
FramesSpec = FramesRecipe


@dataclass(frozen=True)
class FeaturesSpec:
    """ExtractFeatures or ImportFeatures: the grid (window, stride in frames; fps of an imported grid, 0: each
    video's own, None: that of the sampled frames), the channel count, the I3D weights (None: imported) and the
    precision of the forward pass."""

    task: str
    window: int
    stride: int
    fps: float | None
    width: int
    weights: str | None
    precision: str


@dataclass(frozen=True)
class EncoderSpec:
    """TrainEncoder: seed, cross-fitting fold (folds 0: every training video) and the resolved encoder config
    (stages.bapg.encoder.DEFAULT_ENCODER with every given value laid over it)."""

    seed: int
    folds: int
    fold: int
    config: dict

    @property
    def on_frames(self) -> bool:
        """Whether Phi is the frame encoder (config encoder cnn): trained on the sampled frames."""
        return self.config["encoder"] == "cnn"


@dataclass(frozen=True)
class SimilaritySpec:
    """SimilarityMatrices: S of the encoder embeddings (use_encoder) or of the features themselves; cross_fit
    folds of encoders for the training videos (0: one encoder); block: the tiling (it can change the last bit of a
    float16 entry)."""

    use_encoder: bool
    cross_fit: int
    block: int


@dataclass(frozen=True)
class ProposalsSpec:
    """TSCProposals: the boundary source, the change-point scales and how many consecutive segments a proposal may
    join."""

    source: str
    scales: Scales
    max_union: int


@dataclass(frozen=True)
class BapgFeaturesSpec:
    """ProposalFeatures: the boundary source, B's channel groups, the projection of Fv before pooling (0: none) and
    the width of B (`channels`), which a +BAPG detector's input carries after the video features."""

    source: str
    groups: tuple[str, ...]
    projection_dim: int
    projection_seed: int
    channels: int


@dataclass(frozen=True)
class DetectorSpec:
    """TrainDetector: the variant (detector, bapg, bapg_source, bapg_groups, seed, untrained), the recipe's name,
    the model options, the resolved training settings, the fusion settings (+BAPG) and how many of the input's
    last channels are BAPG's (0 without BAPG)."""

    detector: str
    bapg: bool
    bapg_source: str | None
    bapg_groups: tuple[str, ...] | None
    seed: int
    untrained: bool
    recipe: str
    model: dict
    train: dict
    fusion: dict | None
    bapg_channels: int


@dataclass(frozen=True)
class DetectSpec:
    """Detect: detections kept per video, Soft-NMS sigma (None: the detector's own), segment voting tIoU (0: off)."""

    max_dets: int
    nms_sigma: float | None
    voting_thresh: float


@dataclass(frozen=True)
class EvaluateSpec:
    """Evaluate: tIoU thresholds, the protocol and the detections kept per video."""

    tiou_thresholds: tuple[float, ...]
    mode: str
    max_dets: int


@dataclass(frozen=True)
class ClassifySpec:
    """ClassifyVideos: external scores (their file's path, size and mtime) or the classifier's resolved settings and
    seed."""

    scores_file: dict | None
    settings: dict | None
    seed: int | None


@dataclass(frozen=True)
class FuseSpec:
    """FuseVideoClasses: classes per video each detection is given."""

    topk: int


@dataclass(frozen=True)
class ReportSpec:
    """Report: test videos drawn in the plots (its rows are its inputs)."""

    examples: int


def scales_of(ms, rates, penalty, min_size) -> Scales:
    return Scales(tuple(ms), tuple(rates), penalty, min_size)


def bapg_width(scales: Scales, groups, projection_dim: int, feature_width: int) -> int:
    """Channels of B for these scales and groups: the pooled width is projection_dim, or the features' (0)."""
    layout = channel_layout(scales.names(), groups, projection_dim or feature_width)
    return layout[-1]["stop"] if layout else 0


def bapg_features_spec(source: str, groups, projection_dim: int, scales: Scales, feature_width: int
                       ) -> BapgFeaturesSpec:
    groups = normalise_groups(groups)
    return BapgFeaturesSpec(source, groups, int(projection_dim), PROJECTION_SEED,
                            bapg_width(scales, groups, int(projection_dim), feature_width))


# The flags of TrainEncoder: its --options JSON may not repeat them (one value, one place, one artifact path).
ENCODER_FLAGS = ("loss", "margin", "gamma", "epochs")


def encoder_config(loss: str, margin: float, gamma: float, epochs: int, options: Mapping) -> dict:
    """The resolved encoder config: the flags (margin, epochs 0: the stage default) and --options over
    DEFAULT_ENCODER; unknown option keys and options that repeat a flag are refused."""
    from tal_pipeline.stages.bapg.encoder import DEFAULT_ENCODER

    options = plain(options)
    unknown = sorted(set(options) - set(DEFAULT_ENCODER))
    if unknown:
        raise ValueError(f"TrainEncoder --options: unknown encoder config keys {unknown}; known: "
                         f"{sorted(set(DEFAULT_ENCODER) - set(ENCODER_FLAGS))}")
    repeated = sorted(set(options) & set(ENCODER_FLAGS))
    if repeated:
        raise ValueError(f"TrainEncoder --options: {repeated} have flags of their own: use "
                         + ", ".join(f"--TrainEncoder-{k}" for k in repeated))
    flags = {"loss": loss, "gamma": float(gamma)}
    if margin:
        flags["margin"] = float(margin)
    if epochs:
        flags["epochs"] = int(epochs)
    return {**DEFAULT_ENCODER, **flags, **options}


def detector_spec(detector: str, bapg: bool, bapg_source: str, bapg_groups, seed: int, untrained: bool,
                  epochs: int, bapg_channels: int) -> DetectorSpec:
    """The detector's settings resolved once: its section's JSON over the recipe over DEFAULT_TRAIN
    (pipeline.config.detector_settings, stages.detectors.training.resolve_train_config); --TrainDetector-epochs
    and untrained (0 epochs) over them."""
    from pipeline.config import detector_settings
    from tal_pipeline.stages.detectors.training import resolve_train_config

    settings = detector_settings(detector)
    train = dict(settings["train"])
    if epochs:
        train["epochs"] = int(epochs)
    if untrained:
        train["epochs"] = 0
    return DetectorSpec(detector=detector, bapg=bool(bapg), bapg_source=bapg_source if bapg else None,
                        bapg_groups=normalise_groups(bapg_groups) if bapg else None, seed=int(seed),
                        untrained=bool(untrained), recipe=settings["recipe"], model=settings["model"],
                        train=resolve_train_config(detector, train), fusion=settings["fusion"] if bapg else None,
                        bapg_channels=int(bapg_channels) if bapg else 0)
