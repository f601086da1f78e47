"""ActionFormer building blocks on (B, D, T) tensors with a (B, T) bool mask: channel LayerNorm, masked convs,
masked down-sampling. Padded steps never reach a real step: every conv sees a masked input and its output is
masked again (with the mask down-sampled like the features)."""
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
        return self.norm(x.transpose(1, 2)).transpose(1, 2)  # (B, D, T)


def downsample_mask(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, T) -> (B, ceil(T / stride)): location i of the coarser grid is real when input step i * stride is."""
    return mask[:, ::stride]


class MaskedConv(nn.Module):
    """Conv1d + norm + ReLU whose output is zero on padded steps (padding never leaks into real steps)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, norm: bool = True, act: bool = True):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2, bias=not norm)
        self.norm = ChannelNorm(c_out) if norm else nn.Identity()
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, T), mask: (B, T) bool -> (B, C_out, T)
        m = mask[:, None, :].to(x.dtype)  # (B, 1, T)
        return self.act(self.norm(self.conv(x * m))) * m


class MaskedDepthwiseConv(nn.Module):
    """Depthwise kernel-3 conv (no bias) with `filters` filters per channel, stride 1 or 2; masked in and out.

    (B, D, T), mask (B, T) -> (B, D * filters, T / stride) with output channel c * filters + j = filter j of
    channel c, and its mask. With stride 2 output i is centred on input step 2i (padding 1): mask[:, ::2].
    """

    def __init__(self, width: int, stride: int = 1, filters: int = 1):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.conv = nn.Conv1d(width, width * filters, 3, stride=stride, padding=1, groups=width, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, D, T), mask: (B, T) bool
        y = self.conv(x * mask[:, None, :].to(x.dtype))  # (B, D * filters, T / stride)
        out_mask = downsample_mask(mask, self.stride)  # (B, T / stride)
        return y * out_mask[:, None, :].to(y.dtype), out_mask


def masked_max_pool(x: torch.Tensor, mask: torch.Tensor, stride: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over the real steps among 2i-1, 2i, 2i+1 (kernel 3, stride 2): the skip path of a down-sampling block.

    Padded steps are -inf before pooling, so they never win against a real step (a plain max-pool would
    let the zeros of the padded tail beat negative real values). Output (B, D, T / 2), zero where padded.
    """
    out_mask = downsample_mask(mask, stride)  # (B, T / 2)
    filled = x.masked_fill(~mask[:, None, :], float("-inf"))  # (B, D, T)
    y = F.max_pool1d(filled, stride + 1, stride=stride, padding=stride // 2)  # (B, D, T / 2)
    return y.masked_fill(~out_mask[:, None, :], 0.0), out_mask  # real outputs see their own real step 2i
