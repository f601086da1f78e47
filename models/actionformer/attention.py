"""Local multi-head conv-attention (ActionFormer's LocalMaskedMHCA): q, k, v each from a masked depthwise conv
(strided when the block down-samples), a LayerNorm and a 1x1 projection; a banded mask keeps the attention
within the local window and hides padded keys.

Short sequences take one full T x T SDPA under that mask; from BANDED_MIN_LENGTH steps on, the banded form
(models/actionformer/banded.py: the same attention to rounding, linear in T) is faster.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tal_pipeline.models.actionformer.banded import banded_attention
from tal_pipeline.models.actionformer.blocks import MaskedDepthwiseConv

# Banded above 256 steps, past the CPU crossover of both recipes' shapes (docs/method.md §8); the small recipe's
# crops (max_seq_len 256) keep the masked form.
BANDED_MIN_LENGTH = 257


def local_attention_mask(mask: torch.Tensor, window: int) -> torch.Tensor:
    """(B, T) key mask -> (B, 1, T, T) bool: query i may attend key j when |i - j| <= window // 2 and j is real.

    Every query may attend itself, so a padded query far from real steps has no empty row (no NaN).
    """
    t = mask.shape[1]
    idx = torch.arange(t, device=mask.device)
    band = (idx[:, None] - idx[None, :]).abs() <= window // 2  # (T, T)
    eye = idx[:, None] == idx[None, :]
    return (band[None, None] & mask[:, None, None, :]) | eye[None, None]


class ConvQKV(nn.Module):
    """(B, D, T), mask (B, T) -> q, k, v stacked as (B, T', 3, D) and the mask (B, T'), T' = T / stride.

    Three independent paths (own depthwise filters, LayerNorm affine and projection each), computed batched:
    one depthwise conv with 3 filters per channel, one normalisation, one batched matmul.
    """

    def __init__(self, width: int, stride: int = 1):
        super().__init__()
        self.conv = MaskedDepthwiseConv(width, stride, filters=3)
        self.norm_weight = nn.Parameter(torch.ones(3, width))
        self.norm_bias = nn.Parameter(torch.zeros(3, width))
        self.proj_weight = nn.Parameter(torch.empty(3, width, width))  # (q/k/v, out, in)
        self.proj_bias = nn.Parameter(torch.zeros(3, width))
        bound = 1.0 / math.sqrt(width)  # nn.Linear's default initialisation, per projection
        nn.init.uniform_(self.proj_weight, -bound, bound)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, d, _ = x.shape
        y, out_mask = self.conv(x, mask)  # (B, 3D, T'), channel 3c + j = filter j (q, k, v) of channel c
        y = y.view(b, d, 3, -1).permute(0, 3, 2, 1)  # (B, T', 3, D)
        y = F.layer_norm(y, (d,)) * self.norm_weight + self.norm_bias  # LayerNorm over D, per q/k/v affine
        y = torch.einsum("btsi,soi->btso", y, self.proj_weight) + self.proj_bias  # (B, T', 3, D)
        return y, out_mask


class LocalConvAttention(nn.Module):
    """(B, D, T), mask (B, T) -> attention output (B, T', D) (zero on padded steps) and its mask (B, T')."""

    def __init__(self, width: int, heads: int, window: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by the number of heads {heads}")
        self.heads, self.window, self.dropout = heads, window, dropout
        self.qkv = ConvQKV(width, stride)
        self.out = nn.Linear(width, width)
        self.out_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, D, T), mask: (B, T) bool
        qkv, out_mask = self.qkv(x, mask)  # (B, T', 3, D), (B, T')
        b, t, _, d = qkv.shape
        q, k, v = qkv.view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T', D/H) each
        p = self.dropout if self.training else 0.0
        if t >= BANDED_MIN_LENGTH:
            a = banded_attention(q, k, v, out_mask, self.window, dropout_p=p)  # (B, H, T', D/H)
        else:
            attn_mask = local_attention_mask(out_mask, self.window)  # (B, 1, T', T'): band, real keys (+ self)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)  # (B, H, T', D/H)
        a = self.out(a.transpose(1, 2).reshape(b, t, d))  # (B, T', D)
        return self.out_drop(a) * out_mask[:, :, None].to(a.dtype), out_mask
