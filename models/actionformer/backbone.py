"""ActionFormer backbone: projection, local-attention encoder, strided feature pyramid."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.actionformer.blocks import LocalTransformerBlock, MaskedConv


class ActionFormerBackbone(nn.Module):
    """(B, C_in, T) -> pyramid [(B, D, T / 2^l)] with masks [(B, T / 2^l)], l = 0 .. levels-1."""

    def __init__(self, in_channels: int, width: int, levels: int, heads: int, window: int,
                 embed_convs: int = 2, stem_blocks: int = 2, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.ModuleList([MaskedConv(in_channels if i == 0 else width, width) for i in range(embed_convs)])
        self.stem = nn.ModuleList([LocalTransformerBlock(width, heads, window, dropout=dropout)
                                   for _ in range(stem_blocks)])
        self.branch = nn.ModuleList([LocalTransformerBlock(width, heads, window, dropout=dropout)
                                     for _ in range(levels - 1)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        # x: (B, C_in, T), mask: (B, T) bool, T divisible by 2^(levels-1)
        for conv in self.embed:
            x = conv(x, mask)  # (B, D, T)
        for block in self.stem:
            x = block(x, mask)  # (B, D, T)
        feats, masks = [x], [mask]
        for block in self.branch:
            mask = mask[:, ::2]  # (B, T_l): location i valid when step i*2^l is
            x = F.max_pool1d(x, 3, stride=2, padding=1)  # (B, D, T_l) strided downsampling
            x = block(x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks
