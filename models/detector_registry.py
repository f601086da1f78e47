"""The detectors behind one interface, by name.

forward(features (B, C, T), mask (B, T)) -> outputs; loss(outputs, targets) -> dict with "total";
predict(outputs) -> per video (segments (N, 2) in feature steps, scores (N,), labels (N,)).
A BAPG variant changes only in_channels (BAPG features are concatenated channel-wise to the video features).
"""
from __future__ import annotations

from torch import nn

from models.actionformer.model import ActionFormer
from models.afsd.model import AFSD

DETECTORS: dict[str, type[nn.Module]] = {"afsd": AFSD, "actionformer": ActionFormer}


def build_detector(name: str, in_channels: int, num_classes: int, **cfg) -> nn.Module:
    """A fresh detector `name` for `in_channels`-wide features and `num_classes` classes (cfg: its keyword options)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {sorted(DETECTORS)}")
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"detector {name!r} needs in_channels >= 1 and num_classes >= 1, got {in_channels}, {num_classes}")
    return DETECTORS[name](in_channels, num_classes, **cfg)
