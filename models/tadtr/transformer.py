"""TadTR's transformer layers (post-norm, as DETR's): the encoder, temporal deformable self-attention over the
snippets, and one decoder layer, self-attention among the action queries then temporal deformable
cross-attention from each query to the encoded snippets around its reference."""
from __future__ import annotations

import torch
from torch import nn

from tal_pipeline.models.tadtr.deformable_attention import TemporalDeformableAttention


class FeedForward(nn.Module):
    """x + Dropout(W2 Dropout(relu(W1 x))), then LayerNorm: (B, N, D) -> (B, N, D)."""

    def __init__(self, width: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, width),
                                 nn.Dropout(dropout))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.net(x))


class EncoderLayer(nn.Module):
    """Every snippet is a query whose reference point is its own centre: X <- LN(X + TDA(X + P, t, X)), FFN."""

    def __init__(self, width: int, heads: int, points: int, hidden: int, dropout: float):
        super().__init__()
        self.attn = TemporalDeformableAttention(width, heads, points)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(width)
        self.ffn = FeedForward(width, hidden, dropout)

    def forward(self, x, pos, reference, valid, lengths):
        # x, pos (B, T, D); reference (B, T) normalised centres; valid (B, T); lengths (B,)
        x = self.norm(x + self.drop(self.attn(x + pos, reference, x, valid, lengths)))  # (B, T, D)
        return self.ffn(x)


class Encoder(nn.Module):
    """A stack of EncoderLayers: (B, T, D) snippet embeddings -> (B, T, D) memory, zero on padded steps."""

    def __init__(self, layers: int, width: int, heads: int, points: int, hidden: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(width, heads, points, hidden, dropout) for _ in range(layers))

    def forward(self, x, pos, valid, lengths):
        t = x.shape[1]
        steps = torch.arange(t, device=x.device, dtype=torch.float32)  # fp32 coordinates, whatever x's dtype
        reference = (steps[None] + 0.5) / lengths[:, None]  # (B, T): step i at (i + 0.5) / L
        keep = valid[..., None].to(x.dtype)  # (B, T, 1)
        for layer in self.layers:
            x = layer(x, pos, reference, valid, lengths) * keep  # padded steps stay zero
        return x


class DecoderLayer(nn.Module):
    """Queries q (B, N, D) with positions p: q <- LN(q + SelfAttn(q + p, q + p, q)); q <- LN(q + TDA(q + p, ref,
    memory)); FFN. ref: (B, N) points (first layer) or (B, N, 2) segments (centre, width)."""

    def __init__(self, width: int, heads: int, points: int, hidden: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.drop1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(width)
        self.cross_attn = TemporalDeformableAttention(width, heads, points)
        self.drop2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(width)
        self.ffn = FeedForward(width, hidden, dropout)

    def forward(self, q, pos, reference, memory, valid, lengths):
        qk = q + pos  # (B, N, D)
        q = self.norm1(q + self.drop1(self.self_attn(qk, qk, q, need_weights=False)[0]))  # (B, N, D)
        q = self.norm2(q + self.drop2(self.cross_attn(q + pos, reference, memory, valid, lengths)))  # (B, N, D)
        return self.ffn(q)
