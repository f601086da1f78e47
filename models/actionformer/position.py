"""Absolute sinusoidal position encoding (Vaswani et al. 2017) as ActionFormer and TriDet add it to the embedded
features when `use_abs_pe` is set (their ActivityNet configs): sin on even channels, cos on odd ones, scaled by
1 / sqrt(D)."""
from __future__ import annotations

import math

import torch


def sinusoid_position(length: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(D, T) encoding of positions 0 .. T-1: entry (j, t) = sin / cos(t / 10000^(2 floor(j/2) / D)) / sqrt(D)."""
    pos = torch.arange(length, device=device, dtype=torch.float64)[None, :]  # (1, T)
    j = torch.arange(width, device=device)
    angle = pos / torch.pow(10000.0, (2 * (j // 2)).to(torch.float64) / width)[:, None]  # (D, T)
    pe = torch.where((j % 2 == 0)[:, None], torch.sin(angle), torch.cos(angle))
    return (pe / math.sqrt(width)).to(dtype)
