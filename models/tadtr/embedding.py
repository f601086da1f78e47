"""TadTR's input: a 1x1 projection of the snippet features with GroupNorm (masked here), and the sine positional
encoding of normalised time that the encoder adds to its queries (DETR's, in one dimension)."""
from __future__ import annotations

import math

import torch
from torch import nn


class InputProjection(nn.Module):
    """(B, C_in, T) -> (B, D, T): Conv1d(k=1), then GroupNorm over the real steps only, zero on padded steps.

    The reference normalises over padded steps too; masking keeps a video's output independent of how much
    padding its batch gave it. With BAPG the input is already Fv' = Fv + fusion (models/fusion.py): a zero fusion
    leaves this projection's input, and so everything after it, exactly the baseline's.
    """

    def __init__(self, in_channels: int, width: int, groups: int = 32, eps: float = 1e-5):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, width, 1)
        self.groups, self.eps = math.gcd(groups, width), eps
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        nn.init.xavier_uniform_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape
        y = self.conv(x)  # (B, D, T)
        m = mask[:, None, None, :].to(y.dtype)  # (B, 1, 1, T)
        g = y.view(b, self.groups, -1, t)  # (B, G, D/G, T)
        count = (m.sum(-1, keepdim=True) * g.shape[2]).clamp(min=1.0)  # (B, 1, 1, 1) real entries per group
        mean = (g * m).sum((2, 3), keepdim=True) / count  # (B, G, 1, 1)
        var = (((g - mean) * m) ** 2).sum((2, 3), keepdim=True) / count
        g = (g - mean) / torch.sqrt(var + self.eps)
        y = g.view(b, -1, t) * self.weight[None, :, None] + self.bias[None, :, None]  # (B, D, T)
        return y * mask[:, None, :].to(y.dtype)


def sine_position(mask: torch.Tensor, width: int, temperature: float = 10000.0) -> torch.Tensor:
    """(B, T) real-step mask -> (B, T, D) sine/cosine encoding of normalised time (2 pi at the last real step).

    Channel pair (2i, 2i + 1) holds sin and cos of 2 pi u / temperature^(2i / D), u = (steps so far) / L.
    """
    steps = mask.to(torch.float32).cumsum(1)  # (B, T): 1 .. L on the real steps
    u = steps / (steps[:, -1:] + 1e-6) * (2.0 * math.pi)  # (B, T)
    i = torch.arange(width, device=mask.device, dtype=torch.float32)
    freq = temperature ** (2.0 * torch.div(i, 2, rounding_mode="floor") / width)  # (D,)
    angle = u[..., None] / freq  # (B, T, D)
    return torch.where(i.long() % 2 == 0, angle.sin(), angle.cos())  # (B, T, D)
