"""TadTR's decoder: N learned action queries, each layer followed by its own class and segment heads, with
segment refinement (TadTR's segment refinement mechanism, Deformable DETR's iterative box refinement).

Segments are (centre, width), normalised to the video's real steps (see deformable_attention). Query q starts
from a reference point c^0 = sigmoid(W p_q) (p_q its learned position embedding). Decoder layer l (l = 1..L)
attends around its reference and predicts, from its output h^l, a refinement (dc, dw) = MLP_l(h^l):

    layer 1:   c^1 = sigmoid(dc + logit(c^0)),          w^1 = sigmoid(dw)
    layer l:   (c^l, w^l) = sigmoid((dc, dw) + logit(sg(c^(l-1), w^(l-1))))

sg = stop-gradient: each layer's reference is the previous layer's prediction, detached, so a layer learns to
refine what it is given rather than to move its predecessors. Every layer's (logits, segment) is supervised
(auxiliary losses); the last layer's is the detection.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from tal_pipeline.models.tadtr.deformable_attention import ScaledLinear
from tal_pipeline.models.tadtr.transformer import DecoderLayer


def logit(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """sigmoid^-1, clamped away from 0 and 1."""
    x = x.clamp(eps, 1.0 - eps)
    return torch.log(x / (1.0 - x))


class MLP(nn.Module):
    """Linear-ReLU-...-Linear: (..., D_in) -> (..., D_out)."""

    def __init__(self, width: int, hidden: int, out: int, layers: int):
        super().__init__()
        dims = [width] + [hidden] * (layers - 1) + [out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.relu(layer(x))
        return x


class Decoder(nn.Module):
    """queries, memory -> per-layer class logits (L, B, N, C) and segments (L, B, N, 2) (centre, width)."""

    def __init__(self, num_classes: int, layers: int, queries: int, width: int, heads: int, points: int,
                 hidden: int, dropout: float, cls_prior: float):
        super().__init__()
        self.query_embed = nn.Embedding(queries, 2 * width)  # [position p_q | content q^0]
        self.reference = ScaledLinear(width, 1)  # c^0 = sigmoid(W p_q); trained at 0.1 x lr, as the reference
        self.layers = nn.ModuleList(DecoderLayer(width, heads, points, hidden, dropout) for _ in range(layers))
        self.cls_heads = nn.ModuleList(nn.Linear(width, num_classes) for _ in range(layers))
        self.seg_heads = nn.ModuleList(MLP(width, width, 2, 3) for _ in range(layers))
        with torch.no_grad():
            nn.init.xavier_uniform_(self.reference.weight, gain=1.0 / self.reference.scale)
            nn.init.zeros_(self.reference.bias)
            for head in self.cls_heads:  # focal-loss prior: every class starts at probability cls_prior
                nn.init.constant_(head.bias, -math.log((1.0 - cls_prior) / cls_prior))
            for head in self.seg_heads:  # no refinement at first: the reference is the prediction
                nn.init.zeros_(head.layers[-1].weight)
                nn.init.zeros_(head.layers[-1].bias)
            self.seg_heads[0].layers[-1].bias[1] = -2.0  # first width sigmoid(-2) = 0.12 of the video

    def forward(self, memory: torch.Tensor, valid: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """memory (B, T, D), valid (B, T), lengths (B,) -> logits (L, B, N, C), segments (L, B, N, 2), last
        hidden state (B, N, D)."""
        b = memory.shape[0]
        pos, q = self.query_embed.weight.chunk(2, dim=1)  # (N, D) each
        pos, q = pos[None].expand(b, -1, -1), q[None].expand(b, -1, -1)  # (B, N, D)
        reference = torch.sigmoid(self.reference(pos))[..., 0]  # (B, N): c^0, a point
        all_logits, all_segments = [], []
        for layer, cls_head, seg_head in zip(self.layers, self.cls_heads, self.seg_heads):
            q = layer(q, pos, reference, memory, valid, lengths)  # (B, N, D)
            delta = seg_head(q)  # (B, N, 2): (dc, dw)
            if reference.dim() == 2:  # after the first layer: the width is new, the centre refines c^0
                seg = torch.sigmoid(torch.stack([delta[..., 0] + logit(reference), delta[..., 1]], -1))
            else:
                seg = torch.sigmoid(delta + logit(reference))  # (B, N, 2)
            all_logits.append(cls_head(q))  # (B, N, C)
            all_segments.append(seg)
            reference = seg.detach()  # sg: the next layer refines this prediction
        return torch.stack(all_logits), torch.stack(all_segments), q
