"""The detectors behind one interface, by name.

forward(features (B, C, T), mask (B, T)) -> outputs; loss(outputs, targets) -> dict with "total";
predict(outputs) -> per video (segments (N, 2) in feature steps, scores (N,), labels (N,));
regression_health(outputs, targets) -> {"fg_locations", "positive_share"} (the post-training health check).
A +BAPG variant is the same detector class wrapped by models.fusion.BAPGFusion: the input holds the video
features followed by `bapg_channels` boundary-aware channels, and the detector still sees the video width.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from tal_pipeline.models.actionformer.model import ActionFormer
from tal_pipeline.models.afsd.model import AFSD
from tal_pipeline.models.fusion import EXTENSIONS, BAPGFusion
from tal_pipeline.models.tadtr.model import TadTR
from tal_pipeline.models.tridet.model import TriDet

DETECTORS: dict[str, type[nn.Module]] = {"afsd": AFSD, "actionformer": ActionFormer, "tadtr": TadTR,
                                       "tridet": TriDet}
# Positional arguments of every detector class, given by the data rather than by a configuration.
_DATA_ARGS = ("in_channels", "num_classes")
_FUSION_DATA_ARGS = ("detector", "video_channels", "bapg_channels")


def _options(cls, skip: tuple[str, ...]) -> dict[str, inspect.Parameter]:
    """The keyword options of `cls` (its constructor's parameters other than those the data gives)."""
    return {k: p for k, p in inspect.signature(cls.__init__).parameters.items()
            if k != "self" and k not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _resolve(cls, options: Mapping[str, Any] | None, skip: tuple[str, ...], what: str) -> dict[str, Any]:
    """Every keyword option of `cls` with its value: the given ones over the constructor's defaults.

    A checkpoint records this full mapping, so loading it never depends on the defaults of the day.
    """
    params = _options(cls, skip)
    options = dict(options or {})
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(f"{what}: unknown option(s) {unknown}; known: {sorted(params)}")
    resolved = {k: (options[k] if k in options else p.default) for k, p in params.items()}
    missing = [k for k, v in resolved.items() if v is inspect.Parameter.empty]
    if missing:
        raise ValueError(f"{what}: option(s) {missing} have no default and were not given")
    return resolved


def _require_complete(cls, options: Any, skip: tuple[str, ...], what: str, optional=()) -> dict[str, Any]:
    """`options` as resolved (or recorded in a checkpoint): exactly the keyword options of `cls` (those in
    `optional` may be absent), else ValueError."""
    if not isinstance(options, Mapping):
        raise ValueError(f"{what}: expected a mapping of resolved options, got {type(options).__name__}")
    params = _options(cls, skip)
    missing, unknown = sorted(set(params) - set(options) - set(optional)), sorted(set(options) - set(params))
    if missing or unknown:
        raise ValueError(f"{what}: not a resolved set of options (missing {missing}, unknown {unknown})")
    return dict(options)


def resolve_model_config(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The fully resolved keyword options of detector `name` (given options over its constructor defaults)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {sorted(DETECTORS)}")
    return _resolve(DETECTORS[name], options, _DATA_ARGS, f"detector {name!r}")


def resolve_fusion_config(options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The fully resolved fusion settings: BAPGFusion's keyword options (hidden width, dropouts, lr_scale), and of
    the extensions (models.fusion.EXTENSIONS) only those switched on: an absent extension is off, so the settings
    a default run records are what they were before the extensions existed. Malformed values: ValueError."""
    from tal_pipeline.models.fusion import check_extensions

    resolved = _resolve(BAPGFusion, options, _FUSION_DATA_ARGS, "BAPG fusion")
    check_extensions(**{k: resolved[k] for k in EXTENSIONS})
    return {k: v for k, v in resolved.items() if k not in EXTENSIONS or v != EXTENSIONS[k]}


def require_resolved(name: str, model: Any, fusion: Any = None, bapg: bool = False) -> None:
    """ValueError unless `model` (and, with bapg, `fusion`) hold every option of the detector (and of the fusion)
    and nothing else: what resolve_model_config / resolve_fusion_config return and a checkpoint records."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {sorted(DETECTORS)}")
    _require_complete(DETECTORS[name], model, _DATA_ARGS, f"detector {name!r} options")
    if bapg:
        _require_complete(BAPGFusion, fusion, _FUSION_DATA_ARGS, "BAPG fusion settings", optional=tuple(EXTENSIONS))


def build_detector(name: str, in_channels: int, num_classes: int, model: Mapping[str, Any],
                   bapg_channels: int = 0, fusion: Mapping[str, Any] | None = None) -> nn.Module:
    """A fresh detector `name` for `in_channels`-wide input and `num_classes` classes.

    model: its resolved options (resolve_model_config); bapg_channels > 0: the last bapg_channels of the input are
    BAPG channels, fused by BAPGFusion with the resolved fusion settings (resolve_fusion_config). Nothing is
    resolved here: the settings a checkpoint records are the ones built. The detector is built first, so with the
    same seed its initial weights equal the baseline's.
    """
    require_resolved(name, model, fusion, bapg=bapg_channels > 0)
    video_channels = in_channels - bapg_channels
    if video_channels < 1 or num_classes < 1 or bapg_channels < 0:
        raise ValueError(f"detector {name!r} needs in_channels > bapg_channels >= 0 and num_classes >= 1, got "
                         f"{in_channels}, {bapg_channels}, {num_classes}")
    detector = DETECTORS[name](video_channels, num_classes, **model)
    if not bapg_channels:
        return detector
    return BAPGFusion(detector, video_channels, bapg_channels, **fusion)
