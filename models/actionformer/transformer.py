"""Pre-LN transformer block with local conv-attention, LayerScale and drop path; stride 2 down-samples."""
from __future__ import annotations

import torch
from torch import nn

from tal_pipeline.models.actionformer.attention import LocalConvAttention
from tal_pipeline.models.actionformer.blocks import masked_max_pool
from tal_pipeline.models.actionformer.droppath import LayerScaleDropPath


class LocalTransformerBlock(nn.Module):
    """(B, D, T), mask (B, T) -> (B, D, T / stride), mask (B, T / stride); zero on padded steps.

    x' = skip(x) + path(attn(LN(x))), out = x' + path(MLP(LN(x'))); skip is the identity, or with stride 2 a
    max-pool over real steps only; the strided q/k/v convs of the attention do the down-sampling.
    Inside, the residual stream is (B, T, D) (LayerNorm and linears over the last axis, no copies).
    """

    def __init__(self, width: int, heads: int, window: int, stride: int = 1, mlp_ratio: int = 4,
                 dropout: float = 0.0, drop_path: float = 0.0, layer_scale_init: float | None = 1.0):
        super().__init__()
        self.stride = stride
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = LocalConvAttention(width, heads, window, stride, dropout)
        hidden = int(mlp_ratio * width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, width), nn.Dropout(dropout))
        self.path_attn = LayerScaleDropPath(width, drop_path, layer_scale_init)
        self.path_mlp = LayerScaleDropPath(width, drop_path, layer_scale_init)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, D, T) zero on padded steps, mask: (B, T) bool
        h = self.norm1(x.transpose(1, 2)).transpose(1, 2)  # (B, D, T)
        a, out_mask = self.attn(h, mask)  # (B, T', D), (B, T'), T' = T / stride
        skip = masked_max_pool(x, mask, self.stride)[0] if self.stride > 1 else x  # (B, D, T')
        m = out_mask[:, :, None].to(x.dtype)  # (B, T', 1)
        h = skip.transpose(1, 2) * m + self.path_attn(a)  # (B, T', D)
        h = h + self.path_mlp(self.mlp(self.norm2(h)) * m)  # (B, T', D)
        return h.transpose(1, 2), out_mask  # (B, D, T')
