"""1-D RoIAlign in plain torch: features pooled over a segment at a fixed number of bins, by linear interpolation
(TadTR's actionness regression head reads the encoder's output this way over each predicted segment).

Steps are centred at integer positions (feature i at i). A segment [s, e] in steps is cut into `bins` equal bins;
each bin is the mean of `samples` evenly spaced points inside it, and a point at a fractional position p is the
linear interpolation of its two neighbouring steps, with p clamped to the real steps [0, L - 1] (the border step
is repeated, as RoIAlign does within one step of the edge).
"""
from __future__ import annotations

import torch


def roi_align_1d(features: torch.Tensor, segments: torch.Tensor, lengths: torch.Tensor, bins: int = 16,
                 samples: int = 2) -> torch.Tensor:
    """features (B, C, T); segments (B, R, 2) [start, end] in steps; lengths (B,) real steps -> (B, R, C, bins)."""
    b, c, t = features.shape
    r = segments.shape[1]
    s, e = segments[..., 0:1].float(), segments[..., 1:2].float()  # (B, R, 1): coordinates in fp32 (autocast too)
    # Point j of bin i sits at s + (i + (j + 0.5) / samples) * (e - s) / bins: bins * samples points per segment.
    frac = (torch.arange(bins * samples, device=features.device, dtype=torch.float32) + 0.5) / (bins * samples)
    pos = s + frac * (e - s)  # (B, R, bins*samples)
    last = (lengths.long() - 1).clamp(0, t - 1)[:, None, None]  # (B, 1, 1) last real step
    pos = torch.minimum(pos.clamp(min=0.0), last.to(pos.dtype))  # inside the real steps
    i0 = pos.floor().long()  # (B, R, P) left neighbour
    i1 = torch.minimum(i0 + 1, last)  # right neighbour, never a padded step
    w1 = (pos - i0.to(pos.dtype))[:, None]  # (B, 1, R, P) weight of the right neighbour

    def gather(idx: torch.Tensor) -> torch.Tensor:  # (B, R, P) steps -> (B, C, R, P) features
        return torch.gather(features, 2, idx.reshape(b, 1, -1).expand(-1, c, -1)).view(b, c, r, -1)

    v0, v1 = gather(i0), gather(i1)
    points = v0 * (1.0 - w1) + v1 * w1  # (B, C, R, P)
    return points.view(b, c, r, bins, samples).mean(-1).permute(0, 2, 1, 3)  # (B, R, C, bins)
