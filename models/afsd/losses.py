"""AFSD losses: softmax focal (eq. 12), tIoU and L1 (eq. 13), quality BCE (eq. 14), total (eq. 11),
activation-guided BCE (eq. 6-8) and the boundary contrastive triplet loss (eq. 9)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tal_pipeline.models.segments import tiou


def softmax_focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Sum over rows of -(1 - p_t)^gamma * log p_t. logits (N, K+1), labels (N,) in [0, K] (0 = background)."""
    logp = F.log_softmax(logits, dim=-1)  # (N, K+1)
    logp_t = logp.gather(1, labels[:, None]).squeeze(1)  # (N,)
    return (-(1.0 - logp_t.exp()).pow(gamma) * logp_t).sum()


def segment_tiou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Row-wise tIoU of pred (N, 2) and gt (N, 2) [start, end] -> (N,), the union floored at 1e-6.

    A reversed prediction (end < start) has no intersection, so its tIoU is 0 whatever its length."""
    return tiou(pred[:, 0], pred[:, 1], gt[:, 0], gt[:, 1], min_union=1e-6)


def tiou_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Eq. 13 (coarse): sum of 1 - tIoU over the given positive rows (N, 2)."""
    return (1.0 - segment_tiou(pred, gt)).sum()


def offset_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 13 (refined): sum of |Delta_hat - Delta| over positive rows (N, 2)."""
    return (pred - target).abs().sum()


def quality_loss(logit: torch.Tensor, target_tiou: torch.Tensor) -> torch.Tensor:
    """Eq. 14: sum of BCE(eta, tIoU(refined, gt)) over positive rows; eta = sigmoid(logit), target detached."""
    return F.binary_cross_entropy_with_logits(logit, target_tiou.detach(), reduction="sum")


def boundary_targets(segments: torch.Tensor, length: int, radius_min: float = 1.0, radius_ratio: float = 0.1
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 7: g^s(i) = 1 when step i is in the neighbourhood B(psi_m) of any start (same for ends).

    B(x) = {i : |i - x| <= max(radius_min, radius_ratio * action length)}. segments (M, 2) -> (T,), (T,).
    """
    i = torch.arange(length, device=segments.device, dtype=segments.dtype)[:, None]  # (T, 1)
    if segments.numel() == 0:
        z = torch.zeros(length, device=segments.device, dtype=segments.dtype)
        return z, z.clone()
    radius = ((segments[:, 1] - segments[:, 0]) * radius_ratio).clamp(min=radius_min)[None, :]  # (1, M)
    g_s = ((i - segments[None, :, 0]).abs() <= radius).any(dim=1).to(segments.dtype)  # (T,)
    g_e = ((i - segments[None, :, 1]).abs() <= radius).any(dim=1).to(segments.dtype)
    return g_s, g_e


def activation_guided_loss(f_s: torch.Tensor, f_e: torch.Tensor, g_s: torch.Tensor, g_e: torch.Tensor,
                           mask: torch.Tensor) -> torch.Tensor:
    """Eq. 6 and 8: g~ = mean_channels(tanh(f)); BCE(g, g~) for starts plus ends, mean over valid steps.

    f_s, f_e (B, D, T) (non-negative after ReLU, so g~ is in [0, 1)); g_s, g_e, mask (B, T).
    """
    m = mask.to(torch.float32)
    total = m.new_zeros(())
    # In fp32 outside autocast: a loss stays fp32, and CUDA autocast refuses binary_cross_entropy outright.
    with torch.autocast(f_s.device.type, enabled=False):
        for f, g in ((f_s, g_s), (f_e, g_e)):
            g_tilde = torch.tanh(f.float()).mean(dim=1).clamp(1e-6, 1 - 1e-6)  # (B, T) eq. 6
            bce = F.binary_cross_entropy(g_tilde, g.float(), reduction="none")  # (B, T)
            total = total + (bce * m).sum() / m.sum().clamp(min=1.0)
    return total


def boundary_triplet_loss(f_a1_e: torch.Tensor, f_a2_s: torch.Tensor, f_bg: torch.Tensor,
                          margin: float = 1.0) -> torch.Tensor:
    """Eq. 9: max(||f^e_A1 - f^s_A2||^2 - ||f^e_A1 - f_Bg||^2 + margin, 0), mean over the N rows (N, D)."""
    pos = (f_a1_e - f_a2_s).pow(2).sum(-1)  # (N,)
    neg = (f_a1_e - f_bg).pow(2).sum(-1)  # (N,)
    return (pos - neg + margin).clamp(min=0).mean()


def afsd_total(cls_c: torch.Tensor, loc_c: torch.Tensor, cls_r: torch.Tensor, loc_r: torch.Tensor,
               quality: torch.Tensor, lam: float = 10.0, gamma: float = 1.0) -> torch.Tensor:
    """Eq. 11: L = l_cls^C + lambda l_loc^C + l_cls^R + lambda l_loc^R + gamma l_q."""
    return cls_c + lam * loc_c + cls_r + lam * loc_r + gamma * quality
