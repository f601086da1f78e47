"""Temporal deformable attention (TadTR, Liu et al. 2022, its temporal deformable attention module, after
Deformable DETR's): each query attends to K sampled points around its reference per head, in plain torch.

For a query z_q with reference point t_q (normalised to [0, 1] over the video's real steps), heads m = 1..M:

    TDA(z_q, t_q, X) = sum_m W_m [ sum_k A_mqk * W'_m x(t_q + dt_mqk) ],   sum_k A_mqk = 1 (softmax over k)

dt_mqk (sampling offsets) and A_mqk (attention weights) are linear in z_q; x(t) at a fractional t is the linear
interpolation of the two neighbouring steps (zero outside the real steps, as grid_sample's zeros padding with
align_corners=False). With a reference segment (centre c_q, width w_q) instead of a point, as in the decoder's
layers after the first (segment refinement), the offsets are relative to the segment: t = c_q + dt / K * w_q / 2.
One feature level (the reference TadTR uses one on THUMOS14). Gather + lerp on any device; no compiled op.

Coordinates: normalised u in [0, 1] covers the real steps of a video of L steps, step i centred at (i + 0.5) / L,
i.e. step position p = u * L - 0.5.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The reference trains the sampling-offset and reference-point projections at 0.1 x the base learning rate. Here
# they compute OFFSET_LR_SCALE * Linear(z) with the Linear's initial weights / OFFSET_LR_SCALE: the same function
# at initialisation, and since Adam's step does not depend on the gradient's scale, the output moves as a 0.1 x
# learning rate would move it, without a parameter group the training loop would have to know about. (Not exactly:
# AdamW's decoupled weight decay still acts at the full rate, lr * wd per step, and these gradients weigh 0.1 x
# in the clipped global norm.)
OFFSET_LR_SCALE = 0.1


class ScaledLinear(nn.Linear):
    """scale * Linear(x): under AdamW, a Linear trained at `scale` x the learning rate (see OFFSET_LR_SCALE)."""

    def __init__(self, in_features: int, out_features: int, scale: float = OFFSET_LR_SCALE):
        super().__init__(in_features, out_features)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.scale


def sample_linear(value: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of value (N, T, D) at fractional step positions (N, P) -> (N, P, D).

    valid (N, T) bool: steps that exist (real, not padding); a neighbour that does not contributes zero.
    """
    n, t, d = value.shape
    i0 = torch.floor(positions)  # (N, P) left neighbour
    frac = positions - i0  # (N, P) in [0, 1)
    i0 = i0.long()
    out = value.new_zeros(n, positions.shape[1], d)
    for idx, w in ((i0, 1.0 - frac), (i0 + 1, frac)):
        inside = (idx >= 0) & (idx < t)  # (N, P)
        safe = idx.clamp(0, t - 1)
        ok = inside & torch.gather(valid, 1, safe)  # (N, P): an existing step
        v = torch.gather(value, 1, safe[..., None].expand(-1, -1, d))  # (N, P, D)
        out = out + v * (w * ok.to(value.dtype))[..., None]
    return out


def deformable_core(value: torch.Tensor, valid: torch.Tensor, locations: torch.Tensor, lengths: torch.Tensor,
                    weights: torch.Tensor) -> torch.Tensor:
    """sum_k A_mqk * V_m(loc_mqk) per head: the inner sum of TDA.

    value (B, T, M, Dh) projected values; valid (B, T); locations (B, Q, M, K) normalised; lengths (B,) real steps;
    weights (B, Q, M, K) softmaxed over K -> (B, Q, M * Dh).
    """
    b, t, m, dh = value.shape
    q, k = locations.shape[1], locations.shape[3]
    pos = locations * lengths[:, None, None, None] - 0.5  # (B, Q, M, K) step positions
    v = value.permute(0, 2, 1, 3).reshape(b * m, t, dh)  # (B*M, T, Dh)
    p = pos.permute(0, 2, 1, 3).reshape(b * m, q * k)  # (B*M, Q*K)
    ok = valid.repeat_interleave(m, dim=0)  # (B*M, T)
    sampled = sample_linear(v, p, ok).view(b, m, q, k, dh)  # (B, M, Q, K, Dh)
    out = (sampled * weights.permute(0, 2, 1, 3)[..., None]).sum(3)  # (B, M, Q, Dh)
    return out.permute(0, 2, 1, 3).reshape(b, q, m * dh)  # (B, Q, M*Dh)


class TemporalDeformableAttention(nn.Module):
    """TDA with M heads and K points per head, one feature level (see the module docstring)."""

    def __init__(self, width: int, heads: int = 8, points: int = 4):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads, self.points = heads, points
        self.offsets = ScaledLinear(width, heads * points)  # dt_mqk
        self.weights = nn.Linear(width, heads * points)  # A_mqk before the softmax
        self.value_proj = nn.Linear(width, width)  # W'_m, all heads
        self.output_proj = nn.Linear(width, width)  # W_m, all heads
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Offsets start as a fixed fan: heads alternately look back and ahead, point k at (k + 1) x a reach that
        # grows over the head pairs from 1 to 2 (steps for a point reference; half-widths / K for a segment, so
        # the points span the segment and, for the widest heads, as much again beyond each boundary).
        nn.init.zeros_(self.offsets.weight)
        pairs = max(self.heads // 2 - 1, 1)
        sign = torch.tensor([1.0 if h % 2 else -1.0 for h in range(self.heads)])
        reach = 1.0 + torch.arange(self.heads).div(2, rounding_mode="floor") / pairs  # (M,) in [1, 2]
        fan = (sign * reach)[:, None] * torch.arange(1, self.points + 1, dtype=torch.float32)[None]  # (M, K)
        self.offsets.bias.copy_(fan.flatten() / self.offsets.scale)
        nn.init.zeros_(self.weights.weight)  # uniform attention over the points at first
        nn.init.zeros_(self.weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, query: torch.Tensor, reference: torch.Tensor, source: torch.Tensor, valid: torch.Tensor,
                lengths: torch.Tensor) -> torch.Tensor:
        """query (B, Q, D) (content + position); reference (B, Q) points or (B, Q, 2) segments (centre, width),
        normalised; source (B, T, D) values; valid (B, T) real steps; lengths (B,) -> (B, Q, D)."""
        b, q, _ = query.shape
        m, k = self.heads, self.points
        value = self.value_proj(source).view(b, source.shape[1], m, -1)  # (B, T, M, Dh); padding is never sampled
        # Sampling locations, weights and the interpolation in fp32 under autocast too: bf16 positions are whole
        # steps apart past 256 and a bf16 sum over the points loses the weights' precision.
        dt = self.offsets(query).view(b, q, m, k).float()  # (B, Q, M, K)
        attn = F.softmax(self.weights(query).view(b, q, m, k).float(), dim=-1)  # (B, Q, M, K): A_mqk, sum_k = 1
        if reference.dim() == 2:  # a point: offsets in steps
            loc = reference[:, :, None, None] + dt / lengths[:, None, None, None]  # (B, Q, M, K)
        else:  # a segment (c, w): offsets in units of half its width / K
            c, w = reference[..., 0], reference[..., 1]  # (B, Q)
            loc = c[:, :, None, None] + dt / k * w[:, :, None, None] * 0.5  # (B, Q, M, K)
        return self.output_proj(deformable_core(value.float(), valid, loc.float(), lengths, attn))  # (B, Q, D)
