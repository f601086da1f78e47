"""ActionFormer neck ("identity" FPN): a LayerNorm per pyramid level, outputs zero on padded steps."""
from __future__ import annotations

import torch
from torch import nn

from tal_pipeline.models.actionformer.blocks import ChannelNorm


class PyramidNorm(nn.Module):
    """[(B, D, T_l)], [(B, T_l)] -> [(B, D, T_l)]: LayerNorm over channels, one per level (not shared)."""

    def __init__(self, width: int, levels: int):
        super().__init__()
        self.norms = nn.ModuleList([ChannelNorm(width) for _ in range(levels)])

    def forward(self, feats: list[torch.Tensor], masks: list[torch.Tensor]) -> list[torch.Tensor]:
        return [norm(f) * m[:, None, :].to(f.dtype) for norm, f, m in zip(self.norms, feats, masks)]  # (B, D, T_l)
