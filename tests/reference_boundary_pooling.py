"""Test-only copy of models/afsd/boundary_pooling.py before the custom autograd Function (commit fe2fbee).

Sparse table of maxima with autograd through torch.maximum and gather: the yardstick the new code is checked
and timed against (tests/test_afsd.py, benchmarks/bench_boundary_pooling.py). Not used by the pipeline.
"""
from __future__ import annotations

import math

import torch

# Unchanged by the rewrite: the reference shares them with production.
from tal_pipeline.models.afsd.boundary_pooling import boundary_regions, region_to_indices  # noqa: F401


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
