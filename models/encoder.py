"""BAPG contrastive encoder Phi (eq. 1) and the two contrastive losses.

Phi maps one time step to an L2-normalised embedding, so the cosine similarity of eq. 2 is a dot product (the
training loop's, stages/bapg/encoder.py; the similarity stage's, stages/bapg/similarity.py).
Two encoders: `StepEncoder` on the per-step I3D feature (the project's default) and `FrameEncoder`, a small
2-D CNN on the sampled uint8 frame (stands in for the paper's ResNet-50 on frames; plain torch).
`StepEncoder(context=k)` (k odd >= 3) sees the features of the k steps centred on each step (a window (N, k, C),
built by stages/bapg/encoder_options.context_windows with the video's edge steps repeated), so its embedding
can tell an action's first steps from the warm-up before them by what surrounds them.

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


def check_context(context) -> int:
    """The temporal-context window in steps: 0 (per-step encoder) or an odd number >= 3 (centred window)."""
    k = int(context)
    if k != context or not (k == 0 or (k >= 3 and k % 2 == 1)):
        raise ValueError(f"context must be 0 (per-step) or an odd number of steps >= 3, got {context!r}")
    return k


class StepEncoder(nn.Module):
    """Per-step feature (N, C) -> unit embedding (N, D): Linear-LayerNorm-GELU-Linear, then L2 norm.

    context = k >= 3: the input is the window of k steps centred on each step, (N, k, C); the first Linear sees
    the k feature vectors concatenated (k * C inputs), i.e. a temporal convolution of kernel k evaluated at the
    centre step. context = 0: one step (N, C), today's per-step MLP (same parameter names either way).
    """

    def __init__(self, in_channels: int, hidden: int = 256, dim: int = 128, context: int = 0):
        super().__init__()
        self.context = check_context(context)
        self.in_channels = int(in_channels)
        self.net = nn.Sequential(nn.Linear(in_channels * max(self.context, 1), hidden), nn.LayerNorm(hidden),
                                 nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.context:
            if x.ndim != 3 or x.shape[1:] != (self.context, self.in_channels):
                raise ValueError(f"StepEncoder(context={self.context}) expects windows (N, {self.context}, "
                                 f"{self.in_channels}), got {tuple(x.shape)}")
            x = x.reshape(x.shape[0], -1)  # (N, k * C): step t-k//2 first
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
                  width: int = 32, context: int = 0) -> nn.Module:
    """Encoder Phi (eq. 1) of the given kind: "mlp" on (N, in_channels) features (or (N, context, in_channels)
    windows), "cnn" on (N, H, W, 3) frames (no temporal context)."""
    if kind == "mlp":
        if not in_channels or in_channels < 1:
            raise ValueError(f"the mlp encoder needs in_channels >= 1, got {in_channels}")
        return StepEncoder(int(in_channels), hidden, dim, context)
    if kind == "cnn":
        if check_context(context):
            raise ValueError("the cnn encoder has no temporal context option (context must be 0)")
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


def hinge_active(name: str, s_ap: torch.Tensor, s_an: torch.Tensor, margin: float = 0.2,
                 gamma: float = 1.0) -> torch.Tensor:
    """(N,) bool: whether the loss's hinge is active (gives the negative a gradient) for each sample:
    triplet s(a,n) - s(a,p) + margin > 0; bapg (eq. 3) s(a,n) > gamma, never for gamma >= 1 on cosine s."""
    if name == "triplet":
        return (s_an - s_ap + margin) > 0
    if name == "bapg":
        return s_an > gamma
    raise ValueError(f"unknown loss {name!r} (known: {', '.join(LOSSES)})")


def input_shape_ok(kind: str, shape: Sequence[int]) -> bool:
    """Whether one step's input shape (without T) suits the encoder kind: (C,) for mlp, (H, W, 3) for cnn."""
    return (len(shape) == 1) if kind == "mlp" else (len(shape) == 3 and shape[-1] == 3)
