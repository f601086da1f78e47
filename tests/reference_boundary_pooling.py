"""Test-only copy of models/afsd/boundary_pooling.py before the custom autograd Function (commit fe2fbee).

Sparse table of maxima with autograd through torch.maximum and gather: the yardstick the new code is checked
and timed against (tests/test_afsd.py, benchmarks/bench_boundary_pooling.py). Not used by the pipeline.
"""
from __future__ import annotations

import math

import torch


def boundary_regions(start: torch.Tensor, end: torch.Tensor, delta_a: float = 4.0, delta_b: float = 10.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: start and end regions of proposals [start, end] (any shape S) -> two (*S, 2) tensors.

    T_s = [psi - w/delta_a, psi + w/delta_b], T_e = [xi - w/delta_b, xi + w/delta_a], w = xi - psi
    (the paper prints w = psi - xi, a sign typo: w is the proposal length).
    """
    w = (end - start).clamp(min=0)
    t_s = torch.stack([start - w / delta_a, start + w / delta_b], dim=-1)
    t_e = torch.stack([end - w / delta_b, end + w / delta_a], dim=-1)
    return t_s, t_e


def region_to_indices(regions: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous regions (B, K, 2) -> inclusive integer index ranges lo, hi (B, K) inside [0, length-1].

    Index j is pooled when floor(a) <= j <= ceil(b); a region wholly outside the valid steps
    collapses onto the nearest valid step, so every proposal pools at least one step.
    """
    last = (lengths.to(regions.device).long() - 1).clamp(min=0)[:, None]  # (B, 1)
    lo = torch.floor(regions[..., 0]).long()
    hi = torch.ceil(regions[..., 1]).long()
    lo = torch.minimum(lo.clamp(min=0), last)
    hi = torch.maximum(torch.minimum(hi.clamp(min=0), last), lo)
    return lo, hi


def _sparse_table(feat: torch.Tensor) -> torch.Tensor:
    """feat (B, C, T) -> table (B, J, T, C) with table[:, j, t] = max(feat[:, :, t : t + 2^j]) (clipped at T)."""
    x = feat.transpose(1, 2)  # (B, T, C)
    t = x.shape[1]
    levels = [x]
    j = 1
    while (1 << j) <= t:
        prev = levels[-1]
        half = 1 << (j - 1)
        shifted = torch.cat([prev[:, half:], prev[:, -1:].expand(-1, half, -1)], dim=1)  # (B, T, C)
        levels.append(torch.maximum(prev, shifted))
        j += 1
    return torch.stack(levels, dim=1)  # (B, J, T, C)


def boundary_max_pool(feat: torch.Tensor, regions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Eq. 4: per proposal k and channel i, max of feat over the steps of region k.

    feat (B, C, T); regions (B, K, 2) in this feature's step units; lengths (B,) valid steps.
    Returns (B, C, K).
    """
    b, c, t = feat.shape
    lo, hi = region_to_indices(regions, lengths)  # (B, K) each
    table = _sparse_table(feat)  # (B, J, T, C)
    n = hi - lo + 1  # (B, K) region sizes >= 1
    level = torch.floor(torch.log2(n.to(torch.float32))).long()
    level = torch.minimum(level, torch.full_like(level, table.shape[1] - 1))
    right = hi - (1 << level) + 1  # start of the second (overlapping) window
    flat = table.reshape(b, -1, c)  # (B, J*T, C)
    idx_a = (level * t + lo)[..., None].expand(-1, -1, c)  # (B, K, C)
    idx_b = (level * t + right)[..., None].expand(-1, -1, c)
    pooled = torch.maximum(torch.gather(flat, 1, idx_a), torch.gather(flat, 1, idx_b))  # (B, K, C)
    return pooled.transpose(1, 2)  # (B, C, K)


def num_table_levels(t: int) -> int:
    """Levels of the sparse table for T steps (for memory estimates)."""
    return int(math.floor(math.log2(max(t, 1)))) + 1
