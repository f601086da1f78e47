"""ActionFormer heads, shared over pyramid levels: classification (sigmoid) and regression (distances)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tal_pipeline.models.actionformer.blocks import MaskedConv


class ClsHead(nn.Module):
    """f (B, D, T_l) -> class logits (B, C, T_l), bias set so the initial foreground probability is prior."""

    def __init__(self, width: int, num_classes: int, convs: int = 2, prior: float = 0.01):
        super().__init__()
        self.tower = nn.ModuleList([MaskedConv(width, width) for _ in range(convs)])
        self.out = nn.Conv1d(width, num_classes, 3, padding=1)
        nn.init.constant_(self.out.bias, -math.log((1 - prior) / prior))

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for conv in self.tower:
            f = conv(f, mask)  # (B, D, T_l), zero on padded steps
        return self.out(f)  # (B, C, T_l)


ACTIVATIONS = ("softplus", "relu")


class RegHead(nn.Module):
    """f (B, D, T_l) -> (start, end) distances in units of the level's stride (B, 2, T_l), >= 0.

    activation: "softplus" (ours) or "relu" (the reference's, for the parity test with it)."""

    def __init__(self, width: int, levels: int, convs: int = 2, activation: str = "softplus"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"distance activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.tower = nn.ModuleList([MaskedConv(width, width) for _ in range(convs)])
        self.out = nn.Conv1d(width, 2, 3, padding=1)
        nn.init.zeros_(self.out.bias)
        self.scales = nn.ParameterList([nn.Parameter(torch.tensor(1.0)) for _ in range(levels)])

    def forward(self, f: torch.Tensor, mask: torch.Tensor, level: int) -> torch.Tensor:
        for conv in self.tower:
            f = conv(f, mask)  # (B, D, T_l)
        raw = self.out(f) * self.scales[level]  # (B, 2, T_l)
        # softplus, not ReLU: distances stay >= 0 yet every location keeps a gradient (sigmoid(raw) > 0),
        # so a location pushed negative can recover; a ReLU there is dead for good (a run's regression died).
        return F.softplus(raw) if self.activation == "softplus" else F.relu(raw)  # (B, 2, T_l)
