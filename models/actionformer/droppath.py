"""LayerScale + stochastic depth on a residual branch (ActionFormer's AffineDropPath; Touvron et al. 2021,
Huang et al. 2016): branch -> drop_path(gamma * branch), the per-channel gamma starting small so that each
block starts close to the identity."""
from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Zero the whole branch of a random share `rate` of the samples, rescale the rest by 1 / (1 - rate)."""
    if rate <= 0.0 or not training:
        return x
    keep = 1.0 - rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # (B, 1, 1): one draw per sample
    return x * (torch.rand(shape, dtype=x.dtype, device=x.device) < keep).to(x.dtype) / keep


class LayerScaleDropPath(nn.Module):
    """(B, T, D) -> drop_path(gamma * x), gamma (D,) initialised to `init` (None: no scale)."""

    def __init__(self, width: int, rate: float = 0.0, init: float | None = 1e-4):
        super().__init__()
        self.rate = float(rate)
        self.scale = nn.Parameter(torch.full((width,), float(init))) if init is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            x = x * self.scale  # (B, T, D), one factor per channel
        return drop_path(x, self.rate, self.training)
