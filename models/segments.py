"""Temporal IoU of segments [start, end]: the project's one implementation, for numpy arrays (evaluation, proposal
recall, Soft-NMS) and torch tensors (detector targets and losses) alike.

tIoU = intersection / (len(a) + len(b) - intersection), elementwise with broadcasting, computed as written (no
tolerance). The union is floored at `min_union` before the division. The default, the smallest positive float64,
changes no positive float64 union and gives tIoU 0 for two zero-length segments (the only finite segments whose
union is 0); torch callers pass a floor that float32 can hold (1e-8, 1e-6), which also bounds the gradient.
"""
from __future__ import annotations

import sys

import numpy as np

EXACT = float(np.finfo(np.float64).smallest_subnormal)


def _library(x):
    # torch is looked up, never imported: a tensor cannot exist before torch is, and numpy callers stay light.
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(x, torch.Tensor) else np


def intersection(start_a, end_a, start_b, end_b):
    """Length of the overlap of [start_a, end_a] and [start_b, end_b] (0 when apart), elementwise."""
    xp = _library(start_a)
    return (xp.minimum(end_a, end_b) - xp.maximum(start_a, start_b)).clip(min=0)


def tiou(start_a, end_a, start_b, end_b, min_union: float = EXACT):
    """tIoU of [start_a, end_a] and [start_b, end_b], elementwise with broadcasting (all numpy or all torch)."""
    inter = intersection(start_a, end_a, start_b, end_b)
    union = (end_a - start_a) + (end_b - start_b) - inter
    return inter / union.clip(min=min_union)


def pairwise_tiou(a, b, min_union: float = EXACT):
    """tIoU of every segment of a (N, 2) with every segment of b (M, 2) -> (N, M)."""
    return tiou(a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1], min_union)
