"""ActionFormer losses: sigmoid focal loss (classification) and DIoU loss (regression)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tal_pipeline.models.segments import tiou


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
                       weight: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of alpha_t (1 - p_t)^gamma BCE(logits, targets) over all entries (Lin et al. 2017), each entry times
    weight (same shape as logits; None: 1)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if weight is not None:
        loss = loss * weight
    return loss.sum()


def smooth_labels(targets: torch.Tensor, eps: float) -> torch.Tensor:
    """Label smoothing of one-hot classification targets (K, C): t (1 - eps) + eps / (C + 1), the background
    counted as a class (ActionFormer's and TriDet's train_cfg.label_smoothing); eps 0 returns them unchanged."""
    if not eps:
        return targets
    return targets * (1.0 - eps) + eps / (targets.shape[-1] + 1)


def diou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over rows of 1 - IoU + d^2 / c^2 for 1-D segments given as distances (left, right) >= 0 from the
    same location: (N, 2) each. d = distance between centres, c = length of the smallest enclosing segment."""
    ps, pe = -pred[:, 0], pred[:, 1]
    ts, te = -target[:, 0], target[:, 1]
    iou = tiou(ps, pe, ts, te, min_union=1e-8)
    enclose = (torch.maximum(pe, te) - torch.minimum(ps, ts)).clamp(min=1e-8)
    dist = 0.5 * ((ps + pe) - (ts + te))
    return (1.0 - iou + (dist / enclose) ** 2).sum()
