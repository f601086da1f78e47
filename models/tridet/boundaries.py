"""The Trident-head's relative boundary modelling (TriDet §3.3): a location's distance to its action's start (end)
is the expectation of a distribution over B + 1 bins, the distances 0 .. B in units of its level's stride.

For location t, bin d of the start distribution scores "the action starts d steps before t" by the start head's
response at the neighbour t - d plus the centre-offset branch's logit for bin d at t itself:

    P_start[t, d] = softmax_d(F_start[t - d] + F_centre_start[t, d]),     d_start[t] = sum_d d * P_start[t, d]

and the end side with the neighbour t + d. The segment is [pos - d_start * stride, pos + d_end * stride]. Bins
whose neighbour lies before the sequence's first step, past its last real step, or on a padded step are left out
of the softmax (logit -inf), so padding never moves a real location's distances; bin 0 (the location itself) is
always in. Here bins are indexed by distance d (the reference orders the start bins the other way round; the
centre-offset channels are learned, so the order is a convention only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SIDES = ("start", "end")


def neighbour_responses(response: torch.Tensor, mask: torch.Tensor, num_bins: int, side: str) -> torch.Tensor:
    """response (B, C, T), mask (B, T) -> (B, C, T, num_bins + 1): [..., t, d] = response[..., t - d] ("start")
    or response[..., t + d] ("end"); -inf where that neighbour is outside the sequence or padded (d > 0)."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    filled = response.masked_fill(~mask[:, None, :], float("-inf"))  # (B, C, T)
    pad = (num_bins, 0) if side == "start" else (0, num_bins)
    windows = F.pad(filled, pad, value=float("-inf")).unfold(-1, num_bins + 1, 1)  # (B, C, T, B+1)
    if side == "start":
        windows = windows.flip(-1)  # unfold's [t, j] is step t + j - B; flipped, [t, d] is step t - d
    # bin 0 is the location's own response, kept even on a padded location (whose row is ignored, but finite)
    return torch.cat([response[..., None], windows[..., 1:]], dim=-1)  # (B, C, T, B+1)


def boundary_distribution(response: torch.Tensor, centre: torch.Tensor, mask: torch.Tensor, side: str
                          ) -> torch.Tensor:
    """P over the bins: response (B, C, T) boundary logits per class, centre (B, num_bins + 1, T) centre-offset
    logits, mask (B, T) -> (B, C, T, num_bins + 1), summing to 1 over the last axis."""
    num_bins = centre.shape[1] - 1
    logits = neighbour_responses(response, mask, num_bins, side) + centre.transpose(1, 2)[:, None]  # (B, C, T, B+1)
    return torch.softmax(logits, dim=-1)


def expected_distance(prob: torch.Tensor) -> torch.Tensor:
    """E[d] = sum_d d * P[..., d]: (..., num_bins + 1) -> (...), in stride units."""
    bins = torch.arange(prob.shape[-1], device=prob.device, dtype=prob.dtype)  # (B+1,) = 0 .. B
    return (prob * bins).sum(dim=-1)


def boundary_distances(start: torch.Tensor, end: torch.Tensor, centre: torch.Tensor, mask: torch.Tensor
                       ) -> torch.Tensor:
    """start, end (B, C, T) boundary logits; centre (B, 2, num_bins + 1, T) centre-offset logits (start, end);
    mask (B, T) -> per-class (start, end) distances (B, T, C, 2) in stride units, each in [0, num_bins]."""
    d_start = expected_distance(boundary_distribution(start, centre[:, 0], mask, "start"))  # (B, C, T)
    d_end = expected_distance(boundary_distribution(end, centre[:, 1], mask, "end"))  # (B, C, T)
    return torch.stack([d_start, d_end], dim=-1).transpose(1, 2)  # (B, T, C, 2)
