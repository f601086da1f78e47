"""BAPG contrastive encoder Phi (eq. 1) and the two contrastive losses.

Phi maps one time step to an L2-normalised embedding, so the cosine similarity of eq. 2 is a dot product (the
training loop's, stages/bapg/encoder.py; the similarity stage's, stages/bapg/similarity.py).
Two encoders: `StepEncoder` on the per-step I3D feature (the project's default) and `FrameEncoder`, a small
2-D CNN on the sampled uint8 frame (stands in for the paper's ResNet-50 on frames; plain torch).

Losses (a = anchor, p = positive, n = negative; s = cosine similarity in [-1, 1]):
- `bapg_loss`: eq. 3 as printed, [s(a,n) - gamma]_+ - s(a,p). With gamma = 1 (the paper's value) the hinge
  is never active because s <= 1, so the loss is -s(a,p) alone: negatives get no gradient and the
  minimum is reached by mapping everything to one point.
- `triplet_margin_loss`: [s(a,n) - s(a,p) + margin]_+, the project's default (a documented deviation from
  eq. 3, docs/method.md §2): it pushes a negative away until it is `margin` less similar than the positive.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("triplet", "bapg")
ENCODERS = ("mlp", "cnn")


class StepEncoder(nn.Module):
    """Per-step feature (N, C) -> unit embedding (N, D): Linear-LayerNorm-GELU-Linear, then L2 norm."""

    def __init__(self, in_channels: int, hidden: int = 256, dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_channels, hidden), nn.LayerNorm(hidden), nn.GELU(),
                                 nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x.float()), dim=-1)  # (N, D), ||.|| = 1 so eq. 2 is a dot product


class FrameEncoder(nn.Module):
    """Sampled frame uint8 (N, H, W, 3) -> unit embedding (N, D): 4 strided convs, global average pool, MLP head."""

    def __init__(self, hidden: int = 256, dim: int = 128, width: int = 32):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            # GroupNorm, not BatchNorm: embeddings must not depend on what else is in the batch.
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.head = StepEncoder(chans[-1], hidden, dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"FrameEncoder expects frames (N, H, W, 3), got {tuple(frames.shape)}")
        x = frames.permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0  # (N, 3, H, W) in [-1, 1]
        x = self.body(x).mean(dim=(2, 3))  # (N, 4*width)
        return self.head(x)  # (N, D)


def build_encoder(kind: str = "mlp", in_channels: int | None = None, hidden: int = 256, dim: int = 128,
                  width: int = 32) -> nn.Module:
    """Encoder Phi (eq. 1) of the given kind: "mlp" on (N, in_channels) features, "cnn" on (N, H, W, 3) frames."""
    if kind == "mlp":
        if not in_channels or in_channels < 1:
            raise ValueError(f"the mlp encoder needs in_channels >= 1, got {in_channels}")
        return StepEncoder(int(in_channels), hidden, dim)
    if kind == "cnn":
        return FrameEncoder(hidden, dim, width)
    raise ValueError(f"unknown encoder {kind!r} (known: {', '.join(ENCODERS)})")


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"unknown reduction {reduction!r}")


def bapg_loss(s_ap: torch.Tensor, s_an: torch.Tensor, gamma: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Eq. 3 as printed: [s(a,n) - gamma]_+ - s(a,p); s_ap, s_an (N,) -> scalar (or (N,) with reduction="none")."""
    return _reduce(F.relu(s_an - gamma) - s_ap, reduction)


def triplet_margin_loss(s_ap: torch.Tensor, s_an: torch.Tensor, margin: float = 0.2,
                        reduction: str = "mean") -> torch.Tensor:
    """Default (deviation from eq. 3): [s(a,n) - s(a,p) + margin]_+; s_ap, s_an (N,) -> scalar."""
    return _reduce(F.relu(s_an - s_ap + margin), reduction)


def contrastive_loss(name: str, s_ap: torch.Tensor, s_an: torch.Tensor, margin: float = 0.2,
                     gamma: float = 1.0) -> torch.Tensor:
    """The configured loss by name ("triplet" or "bapg"), mean over the batch."""
    if name == "triplet":
        return triplet_margin_loss(s_ap, s_an, margin)
    if name == "bapg":
        return bapg_loss(s_ap, s_an, gamma)
    raise ValueError(f"unknown loss {name!r} (known: {', '.join(LOSSES)})")


def input_shape_ok(kind: str, shape: Sequence[int]) -> bool:
    """Whether one step's input shape (without T) suits the encoder kind: (C,) for mlp, (H, W, 3) for cnn."""
    return (len(shape) == 1) if kind == "mlp" else (len(shape) == 3 and shape[-1] == 3)
