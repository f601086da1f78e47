"""GroupNorm over the real steps only: TriDet normalises the SGP layer's output with GroupNorm before its MLP
(§3.2), and a plain nn.GroupNorm would take its statistics over the padded tail too, so the amount of padding
would change every real output."""
from __future__ import annotations

import torch
from torch import nn


class MaskedGroupNorm(nn.Module):
    """(B, D, T), mask (B, T) -> (B, D, T): per sample and group of D / groups channels, mean and variance over
    those channels x the real steps; a per-channel affine after; zero on padded steps. On an unpadded input it
    equals nn.GroupNorm(groups, D)."""

    def __init__(self, groups: int, width: int, eps: float = 1e-5):
        super().__init__()
        if width % groups:
            raise ValueError(f"GroupNorm needs the width ({width}) to be a multiple of the groups ({groups})")
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, d, t = x.shape
        xg = x.reshape(b, self.groups, d // self.groups, t)  # (B, G, D/G, T)
        m = mask[:, None, None, :].to(x.dtype)  # (B, 1, 1, T)
        count = (m.sum(dim=-1, keepdim=True) * (d // self.groups)).clamp(min=1.0)  # (B, 1, 1, 1) entries per group
        mean = (xg * m).sum(dim=(2, 3), keepdim=True) / count  # (B, G, 1, 1)
        var = (((xg - mean) * m) ** 2).sum(dim=(2, 3), keepdim=True) / count  # (B, G, 1, 1), biased as GroupNorm's
        y = ((xg - mean) / torch.sqrt(var + self.eps)).reshape(b, d, t)  # (B, D, T)
        return (y * self.weight[:, None] + self.bias[:, None]) * mask[:, None, :].to(x.dtype)
