"""ActionFormer building blocks: masked conv, channel LayerNorm, local-window self-attention block."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelNorm(nn.Module):
    """LayerNorm over channels of a (B, D, T) tensor."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class MaskedConv(nn.Module):
    """Conv1d + norm + ReLU whose output is zero on padded steps (padding never leaks into real steps)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, norm: bool = True, act: bool = True):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.norm = ChannelNorm(c_out) if norm else nn.Identity()
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, T), mask: (B, T) bool -> (B, C_out, T)
        m = mask[:, None, :].to(x.dtype)
        return self.act(self.norm(self.conv(x * m))) * m


def local_attention_mask(mask: torch.Tensor, window: int) -> torch.Tensor:
    """(B, T) key mask -> (B, 1, T, T) bool: query i may attend key j when |i - j| <= window // 2 and j is real.

    Every query may attend itself, so a padded query far from real steps has no empty row (no NaN).
    """
    t = mask.shape[1]
    idx = torch.arange(t, device=mask.device)
    band = (idx[:, None] - idx[None, :]).abs() <= window // 2  # (T, T)
    eye = idx[:, None] == idx[None, :]
    return (band[None, None] & mask[:, None, None, :]) | eye[None, None]


class LocalTransformerBlock(nn.Module):
    """Pre-LN transformer block with multi-head self-attention restricted to a local window (masked)."""

    def __init__(self, width: int, heads: int, window: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by the number of heads {heads}")
        self.heads, self.window = heads, window
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, D, T), mask: (B, T) bool
        b, d, t = x.shape
        h = x.transpose(1, 2)  # (B, T, D)
        q, k, v = self.qkv(self.norm1(h)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # q, k, v: (B, H, T, D/H); band mask keeps attention local, key mask hides padding
        attn_mask = local_attention_mask(mask, self.window)  # (B, 1, T, T)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, D/H)
        h = h + self.proj(a.transpose(1, 2).reshape(b, t, d))
        h = h + self.mlp(self.norm2(h))
        return h.transpose(1, 2) * mask[:, None, :].to(x.dtype)  # (B, D, T)
