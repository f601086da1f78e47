"""AFSD feature side on precomputed per-step features: projection, temporal pyramid, frame-level feature.

AFSD's own backbone is I3D run end-to-end; here the input is already I3D (+ BAPG) features, so the
"video backbone" is a 1x1 projection. Pyramid level l has stride 2^l in input steps (eq. 1).
"""
from __future__ import annotations

import torch
from torch import nn


def conv_gn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 32) -> nn.Sequential:
    """Temporal conv + GroupNorm + ReLU, the unit AFSD builds everything from."""
    g = min(groups, c_out)
    while c_out % g:
        g -= 1
    return nn.Sequential(nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2),
                         nn.GroupNorm(g, c_out), nn.ReLU(inplace=True))


class TemporalPyramid(nn.Module):
    """(B, C_in, T) -> frame-level feature (B, D, T) and pyramid [(B, D, T / 2^l) for l < levels]."""

    def __init__(self, in_channels: int, width: int, levels: int, frame_convs: int = 2):
        super().__init__()
        self.levels = levels
        self.proj = conv_gn_relu(in_channels, width, kernel=1)  # per-step projection of I3D (+BAPG) features
        self.base = conv_gn_relu(width, width)  # level 0 (stride 1)
        self.down = nn.ModuleList([conv_gn_relu(width, width, stride=2) for _ in range(levels - 1)])
        # Frame-level branch (AFSD's f_frame): full resolution, its own convs on the projected input.
        self.frame = nn.Sequential(*[conv_gn_relu(width, width) for _ in range(frame_convs)])

    def forward(self, x: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        # x: (B, C_in, T), mask: (B, T) bool, T divisible by 2^(levels-1)
        m = mask[:, None, :].to(x.dtype)  # (B, 1, T)
        h = self.proj(x) * m  # (B, D, T)
        frame = self.frame(h) * m  # (B, D, T)
        feats, masks = [], []
        cur, cur_mask = self.base(h) * m, mask  # (B, D, T)
        for level in range(self.levels):
            if level > 0:
                cur_mask = cur_mask[:, ::2]  # (B, T / 2^l): location i valid when step i*2^l is
                cur = self.down[level - 1](cur) * cur_mask[:, None, :].to(x.dtype)
            feats.append(cur)
            masks.append(cur_mask)
        return frame, feats, masks
