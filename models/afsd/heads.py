"""AFSD heads: basic anchor-free predictor (sec. 3.1, eq. 1) and saliency-based refinement (eq. 2-5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tal_pipeline.models.afsd.boundary_pooling import boundary_max_pool
from tal_pipeline.models.afsd.pyramid import conv_gn_relu


class Scale(nn.Module):
    """A learnable scalar per pyramid level (regression ranges differ by level)."""

    def __init__(self, init: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class CoarseHead(nn.Module):
    """Shared over levels: f -> f_loc, f_cls (two convs each), start/end distances and class logits."""

    def __init__(self, width: int, num_classes: int, levels: int, tower: int = 2):
        super().__init__()
        self.loc_tower = nn.Sequential(*[conv_gn_relu(width, width) for _ in range(tower)])
        self.cls_tower = nn.Sequential(*[conv_gn_relu(width, width) for _ in range(tower)])
        self.loc_out = nn.Conv1d(width, 2, 3, padding=1)
        self.cls_out = nn.Conv1d(width, num_classes + 1, 3, padding=1)  # class 0 = background (softmax focal)
        self.scales = nn.ModuleList([Scale() for _ in range(levels)])

    def forward(self, feat: torch.Tensor, level: int, stride: int):
        # feat: (B, D, T_l)
        f_loc = self.loc_tower(feat)  # (B, D, T_l)
        f_cls = self.cls_tower(feat)  # (B, D, T_l)
        # Distances in input steps: softplus keeps them positive and smooth, x stride sets the level's scale.
        dist = F.softplus(self.scales[level](self.loc_out(f_loc))) * stride  # (B, 2, T_l): d^s, d^e
        logits = self.cls_out(f_cls)  # (B, K+1, T_l)
        return f_loc, f_cls, dist, logits


def decode_coarse(dist: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1: psi_i = i*2^l - d^s_i, xi_i = i*2^l + d^e_i. dist (B, 2, T_l) -> start, end (B, T_l)."""
    pos = torch.arange(dist.shape[-1], device=dist.device, dtype=torch.float32) * stride  # (T_l,) fp32 steps
    dist = dist.float()  # coordinates in fp32 under autocast too (bf16 steps are 8 apart near 2,304)
    return pos - dist[:, 0], pos + dist[:, 1]


class BoundarySensitive(nn.Module):
    """Eq. 2: f^s = ReLU(GN(Conv1(f))), f^e = ReLU(GN(Conv2(f)))."""

    def __init__(self, width: int):
        super().__init__()
        self.start = conv_gn_relu(width, width)
        self.end = conv_gn_relu(width, width)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.start(f), self.end(f)  # (B, D, T) each


class RefineBranch(nn.Module):
    """Eq. 2-5 for one branch (loc or cls): pooled boundary features fused with the level feature."""

    def __init__(self, width: int):
        super().__init__()
        self.level_sens = BoundarySensitive(width)  # shared over pyramid levels
        self.frame_sens = BoundarySensitive(width)  # on the frame-level feature
        self.fuse = conv_gn_relu(5 * width, width, kernel=1)  # eq. 5: Conv(f || f^s || f^e || ~f^s || ~f^e)

    def frame_features(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.frame_sens(frame)  # (B, D, T) each: ~f^s, ~f^e before pooling

    def forward(self, f: torch.Tensor, frame_s: torch.Tensor, frame_e: torch.Tensor, t_s: torch.Tensor,
                t_e: torch.Tensor, stride: int, lengths: torch.Tensor) -> torch.Tensor:
        # f: (B, D, T_l); frame_s/e: (B, D, T); t_s/t_e: (B, T_l, 2) regions in input steps; lengths: (B,)
        f_s, f_e = self.level_sens(f)  # (B, D, T_l)
        level_len = torch.div(lengths + stride - 1, stride, rounding_mode="floor")  # valid locations
        hat_s = boundary_max_pool(f_s, t_s / stride, level_len)  # (B, D, T_l) eq. 4 on the level
        hat_e = boundary_max_pool(f_e, t_e / stride, level_len)
        tilde_s = boundary_max_pool(frame_s, t_s, lengths)  # (B, D, T_l) eq. 4 on the frame-level feature
        tilde_e = boundary_max_pool(frame_e, t_e, lengths)
        return self.fuse(torch.cat([f, hat_s, hat_e, tilde_s, tilde_e], dim=1))  # (B, D, T_l)
