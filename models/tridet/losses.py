"""TriDet's losses (§3.4): sigmoid focal loss whose positive entries are weighted by the tIoU of their decoded
segment, and the DIoU loss of ActionFormer (models/actionformer/losses.py) on the positives' distances."""
from __future__ import annotations

import torch

from tal_pipeline.models.actionformer.losses import sigmoid_focal_loss
from tal_pipeline.models.segments import tiou


def offset_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """tIoU of segments given as (start, end) distances >= 0 from the same location: (N, 2) each -> (N,)."""
    return tiou(-pred[:, 0], pred[:, 1], -target[:, 0], target[:, 1], min_union=1e-8)


def iou_weighted_focal_loss(logits: torch.Tensor, targets: torch.Tensor, pos_loc: torch.Tensor,
                            pos_cls: torch.Tensor, iou: torch.Tensor, power: float, alpha: float = 0.25,
                            gamma: float = 2.0) -> torch.Tensor:
    """Sum of the focal loss over logits / targets (K, C), the positive entry (pos_loc[i], pos_cls[i]) weighted by
    iou[i] ** power (the tIoU of that class's decoded segment with its ground truth), every other entry by 1.

    As in the reference, the weight scales the positive's LOSS (its target stays 1). Unlike the reference the
    weight is detached: it rates the current localisation, and a gradient through it would lower the focal loss
    by making the localisation worse (d(loss * IoU^p) / dIoU > 0).
    """
    weight = torch.ones(targets.shape, dtype=torch.float32, device=targets.device)  # (K, C), fp32 as the IoUs
    weight[pos_loc, pos_cls] = iou.detach().float().clamp(min=0.0) ** power  # (P,) positives
    return sigmoid_focal_loss(logits.float(), targets.float(), alpha, gamma, weight=weight)
