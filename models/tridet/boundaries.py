"""The Trident-head's relative boundary modelling (TriDet §3.3): a location's distance to its action's start (end)
is the expectation of a distribution over B + 1 bins, the distances 0 .. B in units of its level's stride.

For location t, bin d of the start distribution scores "the action starts d steps before t" by the start head's
response at the neighbour t - d plus the centre-offset branch's logit for bin d at t itself:

    P_start[t, d] = softmax_d(F_start[t - d] + F_centre_start[t, d]),     d_start[t] = sum_d d * P_start[t, d]

and the end side with the neighbour t + d. The segment is [pos - d_start * stride, pos + d_end * stride]. A bin
whose neighbour is not a real step (before the sequence's first step, past its last real step, or on a padded
step) takes the response 0, as in the reference, which pads the boundary heads' outputs with zeros there (and
whose masked convs output 0 on padded steps): the bin stays in the softmax with its centre-offset logit alone.
Leaving it out (-inf) would make every segment end at the last real location of its level or before it, so no
action ending in the last (stride - 1) steps of the input could be fitted on a coarse level. Filling
padded and out-of-sequence neighbours alike keeps the outputs independent of the padding. `outside` sets the
response there (a model option; None: -inf, for the ablation only). Here bins are indexed
by distance d (the reference orders the start bins the other way round; the centre-offset channels are learned,
so the order is a convention only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SIDES = ("start", "end")


def neighbour_responses(response: torch.Tensor, mask: torch.Tensor, num_bins: int, side: str,
                        outside: float | None = 0.0) -> torch.Tensor:
    """response (B, C, T), mask (B, T) -> (B, C, T, num_bins + 1): [..., t, d] = response[..., t - d] ("start")
    or response[..., t + d] ("end"); `outside` where that neighbour is outside the sequence or padded (None: -inf,
    bin 0 excepted)."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    fill = float("-inf") if outside is None else float(outside)
    filled = response.masked_fill(~mask[:, None, :], fill)  # (B, C, T): padded steps as outside the sequence
    pad = (num_bins, 0) if side == "start" else (0, num_bins)
    windows = F.pad(filled, pad, value=fill).unfold(-1, num_bins + 1, 1)  # (B, C, T, B+1)
    if side == "start":
        windows = windows.flip(-1)  # unfold's [t, j] is step t + j - B; flipped, [t, d] is step t - d
    if outside is None:  # bin 0 stays finite on a padded location (its row is ignored, but must not be NaN)
        windows = torch.cat([response[..., None], windows[..., 1:]], dim=-1)
    return windows  # (B, C, T, B+1)


def boundary_distribution(response: torch.Tensor, centre: torch.Tensor, mask: torch.Tensor, side: str,
                          outside: float | None = 0.0) -> torch.Tensor:
    """P over the bins: response (B, C, T) boundary logits per class, centre (B, num_bins + 1, T) centre-offset
    logits, mask (B, T) -> (B, C, T, num_bins + 1), summing to 1 over the last axis."""
    num_bins = centre.shape[1] - 1
    neighbours = neighbour_responses(response, mask, num_bins, side, outside)  # (B, C, T, B+1)
    logits = neighbours + centre.transpose(1, 2)[:, None]  # (B, C, T, B+1)
    return torch.softmax(logits, dim=-1)


def expected_distance(prob: torch.Tensor) -> torch.Tensor:
    """E[d] = sum_d d * P[..., d]: (..., num_bins + 1) -> (...), in stride units."""
    bins = torch.arange(prob.shape[-1], device=prob.device, dtype=prob.dtype)  # (B+1,) = 0 .. B
    return (prob * bins).sum(dim=-1)


def boundary_distances(start: torch.Tensor, end: torch.Tensor, centre: torch.Tensor, mask: torch.Tensor,
                       outside: float | None = 0.0) -> torch.Tensor:
    """start, end (B, C, T) boundary logits; centre (B, 2, num_bins + 1, T) centre-offset logits (start, end);
    mask (B, T); outside: the response of bins off the real steps -> per-class (start, end) distances
    (B, T, C, 2) in stride units, each in [0, num_bins]."""
    d_start = expected_distance(boundary_distribution(start, centre[:, 0], mask, "start", outside))  # (B, C, T)
    d_end = expected_distance(boundary_distribution(end, centre[:, 1], mask, "end", outside))  # (B, C, T)
    return torch.stack([d_start, d_end], dim=-1).transpose(1, 2)  # (B, T, C, 2)
