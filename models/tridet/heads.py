"""The Trident-head (TriDet §3.3), shared over pyramid levels: classification, start and end boundary responses,
and the centre-offset branch; the boundary distances are decoded here (models/tridet/boundaries.py)."""
from __future__ import annotations

import torch
from torch import nn

from tal_pipeline.models.actionformer.blocks import MaskedConv
from tal_pipeline.models.actionformer.heads import ClsHead
from tal_pipeline.models.tridet.boundaries import boundary_distances


class CentreOffsetHead(nn.Module):
    """f (B, D, T_l) -> centre-offset logits (B, 2, num_bins + 1, T_l): for the start and the end side, one logit per
    bin, times a learnable scale per pyramid level. No ReLU (the reference has one, from ActionFormer's distance
    head): these are logits of a softmax and need no sign, and a ReLU would stop the gradient of every bin whose
    logit is negative."""

    def __init__(self, width: int, levels: int, num_bins: int, convs: int = 2):
        super().__init__()
        self.num_bins = num_bins
        self.tower = nn.ModuleList([MaskedConv(width, width) for _ in range(convs)])
        self.out = nn.Conv1d(width, 2 * (num_bins + 1), 3, padding=1)
        nn.init.zeros_(self.out.bias)  # no bin favoured at initialisation
        self.scales = nn.ParameterList([nn.Parameter(torch.tensor(1.0)) for _ in range(levels)])

    def forward(self, f: torch.Tensor, mask: torch.Tensor, level: int) -> torch.Tensor:
        for conv in self.tower:
            f = conv(f, mask)  # (B, D, T_l), zero on padded steps
        out = self.out(f) * self.scales[level]  # (B, 2 (B+1), T_l)
        return out.reshape(out.shape[0], 2, self.num_bins + 1, out.shape[-1])  # (B, 2, B+1, T_l)


class TridentHead(nn.Module):
    """Per level f (B, D, T_l), mask (B, T_l) -> class logits (B, T_l, C) and per-class boundary distances
    (B, T_l, C, 2) in stride units.

    The start and end heads are classification-style heads (one response per class, as in the reference) on
    DETACHED features: the boundary losses train those heads but never reach the backbone (§3.3). The
    classification head and the centre-offset branch see the features as they are. outside_logit: the response of
    a bin whose neighbour is not a real step (models/tridet/boundaries.py; 0 as the reference, None: -inf).
    """

    def __init__(self, width: int, num_classes: int, levels: int, num_bins: int = 16, convs: int = 2,
                 prior: float = 0.01, outside_logit: float | None = 0.0):
        super().__init__()
        self.outside_logit = outside_logit
        self.cls_head = ClsHead(width, num_classes, convs, prior)
        self.start_head = ClsHead(width, num_classes, convs, prior)
        self.end_head = ClsHead(width, num_classes, convs, prior)
        self.centre_head = CentreOffsetHead(width, levels, num_bins, convs)

    def forward(self, f: torch.Tensor, mask: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.cls_head(f, mask)  # (B, C, T_l)
        start = self.start_head(f.detach(), mask)  # (B, C, T_l) start-boundary response of every class
        end = self.end_head(f.detach(), mask)  # (B, C, T_l)
        centre = self.centre_head(f, mask, level)  # (B, 2, B+1, T_l)
        dists = boundary_distances(start, end, centre, mask, self.outside_logit)  # (B, T_l, C, 2)
        return logits.transpose(1, 2), dists  # (B, T_l, C), (B, T_l, C, 2)
