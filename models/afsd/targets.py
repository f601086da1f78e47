"""AFSD label assignment (sec. 3.4) for the coarse and the refined predictions, one video at a time."""
from __future__ import annotations

import torch

from tal_pipeline.models.segments import pairwise_tiou


def coarse_targets(positions: torch.Tensor, gt_segments: torch.Tensor, gt_labels: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Location i is positive for ground truth j when psi_j <= i*2^l <= xi_j (the shortest such j wins).

    positions (K,) in input steps; gt_segments (M, 2); gt_labels (M,) 0-based.
    Returns labels (K,) in [0, num_classes] (0 = background) and matched segments (K, 2).
    """
    k = positions.shape[0]
    if gt_segments.numel() == 0:
        return torch.zeros(k, dtype=torch.long, device=positions.device), positions.new_zeros(k, 2)
    inside = (positions[:, None] >= gt_segments[None, :, 0]) & (positions[:, None] <= gt_segments[None, :, 1])  # (K, M)
    length = (gt_segments[:, 1] - gt_segments[:, 0])[None, :].expand(k, -1)  # (K, M)
    length = torch.where(inside, length, torch.full_like(length, float("inf")))
    best_len, best = length.min(dim=1)  # (K,)
    labels = torch.where(torch.isfinite(best_len), gt_labels[best] + 1, torch.zeros_like(best))
    return labels, gt_segments[best]


def refined_targets(coarse: torch.Tensor, gt_segments: torch.Tensor, gt_labels: torch.Tensor,
                    threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """A location is a refined positive when its coarse segment has tIoU > threshold with a ground truth.

    coarse (K, 2) (detached); returns labels (K,) in [0, num_classes] and the best-tIoU segments (K, 2).
    """
    k = coarse.shape[0]
    if gt_segments.numel() == 0:
        return torch.zeros(k, dtype=torch.long, device=coarse.device), coarse.new_zeros(k, 2)
    iou = pairwise_tiou(coarse, gt_segments, min_union=1e-8)  # (K, M)
    best_iou, best = iou.max(dim=1)  # (K,)
    labels = torch.where(best_iou > threshold, gt_labels[best] + 1, torch.zeros_like(best))
    return labels, gt_segments[best]


def offset_targets(coarse: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Inverse of eq. 15: Delta_psi = 2 (psi - psi_hat) / w_hat, Delta_xi = 2 (xi - xi_hat) / w_hat. (K, 2)."""
    w = (coarse[:, 1] - coarse[:, 0]).clamp(min=1e-3)[:, None]  # (K, 1)
    return 2.0 * (gt - coarse) / w
