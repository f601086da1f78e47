"""Inception-v1 I3D (Carreira & Zisserman 2017) in plain torch, RGB stream.

State-dict keys follow the pytorch-i3d layout
(344 entries, loads with strict=True). Numerics follow DeepMind's TF/Sonnet model:
TF "SAME" padding computed from the actual input size for every conv and pool, BatchNorm
eps 1e-3 with no learned scale, input RGB in [-1, 1] shaped (B, 3, T, H, W).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
# pytorch-i3d's momentum (only matters if someone fine-tunes; inference uses running stats).
BN_MOMENTUM = 0.01
FEATURE_DIM = 1024
NUM_CLASSES = 400

# Inception block channel plan, in-channels -> (b0, b1a, b1b, b2a, b2b, b3b) (pytorch-i3d layout).
MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (front, back) along one axis of length `size`.

    total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0); TF puts the odd pixel at the back.
    """
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    front = total // 2
    return front, total - front


def _pads_3d(shape: tuple[int, int, int], kernel, stride) -> list[tuple[int, int]]:
    return [same_pads(n, k, s) for n, k, s in zip(shape, kernel, stride)]


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm (eps 1e-3) + ReLU, with TF SAME padding."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, stride=self.stride, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, Cin, T, H, W) -> (B, Cout, ceil(T/sT), ceil(H/sH), ceil(W/sW))
        pads = _pads_3d(tuple(x.shape[2:]), self.kernel, self.stride)
        if all(a == b for a, b in pads):
            # Symmetric: let the conv pad (no extra copy of the input).
            y = F.conv3d(x, self.conv3d.weight, None, self.stride, tuple(a for a, _ in pads))
        else:
            # F.pad wants the last axis first: (W0, W1, H0, H1, T0, T1).
            x = F.pad(x, [p for pair in reversed(pads) for p in pair])
            y = F.conv3d(x, self.conv3d.weight, None, self.stride)
        return F.relu(self.bn(y), inplace=True)


def max_pool_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    """3-D max pool with TF SAME padding (padding never wins a max, as in TF)."""
    # x: (B, C, T, H, W) -> (B, C, ceil(T/sT), ceil(H/sH), ceil(W/sW))
    pads = _pads_3d(tuple(x.shape[2:]), kernel, stride)
    if all(a == b for a, b in pads) and all(a <= k // 2 for (a, _), k in zip(pads, kernel)):
        return F.max_pool3d(x, kernel, stride, padding=tuple(a for a, _ in pads))
    x = F.pad(x, [p for pair in reversed(pads) for p in pair], value=float("-inf"))
    return F.max_pool3d(x, kernel, stride)


class InceptionBlock(nn.Module):
    """Inception-v1 block inflated to 3-D: concat of [1x1, 1x1->3x3, 1x1->3x3, maxpool3->1x1]."""

    def __init__(self, cin: int, ch: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(cin, ch[0])
        self.b1a = Unit3D(cin, ch[1])
        self.b1b = Unit3D(ch[1], ch[2], (3, 3, 3))
        self.b2a = Unit3D(cin, ch[3])
        self.b2b = Unit3D(ch[3], ch[4], (3, 3, 3))
        self.b3b = Unit3D(cin, ch[5])
        self.out_channels = ch[0] + ch[2] + ch[4] + ch[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, Cin, T, H, W) -> (B, b0 + b1b + b2b + b3b, T, H, W)
        b3 = max_pool_same(x, (3, 3, 3), (1, 1, 1))  # "b3a": parameter-free
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(b3)], dim=1)


class Logits(nn.Module):
    """Kinetics classifier: a 1x1x1 conv with bias, no BN, no ReLU (key `logits.conv3d.*`)."""

    def __init__(self, cin: int = FEATURE_DIM, classes: int = NUM_CLASSES):
        super().__init__()
        self.conv3d = nn.Conv3d(cin, classes, (1, 1, 1), bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3d(x)


class I3D(nn.Module):
    """RGB I3D backbone returning 1024-d avg-pooled Mixed_5c features and optionally Kinetics logits."""

    def __init__(self, in_channels: int = 3, num_classes: int = NUM_CLASSES, with_logits: bool = False):
        super().__init__()
        self.with_logits = with_logits  # default for forward(); the logits conv always exists (344 keys)
        # Registered first, as pytorch-i3d does (order only affects state_dict listing).
        self.logits = Logits(FEATURE_DIM, num_classes)
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        for name, (cin, ch) in MIXED.items():
            setattr(self, name, InceptionBlock(cin, ch))

    def mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone up to Mixed_5c. Shapes for a (B, 3, 16, 224, 224) input in comments."""
        x = self.Conv3d_1a_7x7(x)                      # (B, 64, 8, 112, 112)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))     # MaxPool3d_2a: (B, 64, 8, 56, 56)
        x = self.Conv3d_2b_1x1(x)                      # (B, 64, 8, 56, 56)
        x = self.Conv3d_2c_3x3(x)                      # (B, 192, 8, 56, 56)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))     # MaxPool3d_3a: (B, 192, 8, 28, 28)
        x = self.Mixed_3b(x)                           # (B, 256, 8, 28, 28)
        x = self.Mixed_3c(x)                           # (B, 480, 8, 28, 28)
        x = max_pool_same(x, (3, 3, 3), (2, 2, 2))     # MaxPool3d_4a: (B, 480, 4, 14, 14)
        x = self.Mixed_4b(x)                           # (B, 512, 4, 14, 14)
        x = self.Mixed_4c(x)                           # (B, 512, 4, 14, 14)
        x = self.Mixed_4d(x)                           # (B, 512, 4, 14, 14)
        x = self.Mixed_4e(x)                           # (B, 528, 4, 14, 14)
        x = self.Mixed_4f(x)                           # (B, 832, 4, 14, 14)
        x = max_pool_same(x, (2, 2, 2), (2, 2, 2))     # MaxPool3d_5a: (B, 832, 2, 7, 7)
        x = self.Mixed_5b(x)                           # (B, 832, 2, 7, 7)
        x = self.Mixed_5c(x)                           # (B, 1024, 2, 7, 7)
        return x

    def forward(self, x: torch.Tensor, with_logits: bool | None = None):
        """x: (B, 3, T, H, W) RGB in [-1, 1].

        Returns features (B, 1024): the mean of Mixed_5c over all remaining (T', H', W') positions
        (for 16x224x224 windows this equals avg_pool3d((2, 7, 7), stride 1)). With `with_logits`,
        returns (features, logits (B, 400)): the logits conv on avg_pool3d(Mixed_5c, (2, 7, 7), stride 1)
        averaged over time, as DeepMind's model (kernel clipped to the extent for small inputs).
        """
        if x.ndim != 5 or x.shape[1] != self.Conv3d_1a_7x7.conv3d.in_channels:
            raise ValueError(f"I3D expects (B, {self.Conv3d_1a_7x7.conv3d.in_channels}, T, H, W), got {tuple(x.shape)}")
        m = self.mixed_5c(x)                           # (B, 1024, T', H', W')
        features = m.mean(dim=(2, 3, 4))               # (B, 1024)
        if not (self.with_logits if with_logits is None else with_logits):
            return features
        k = (min(2, m.shape[2]), min(7, m.shape[3]), min(7, m.shape[4]))
        pooled = F.avg_pool3d(m, k, stride=1)          # (B, 1024, T'-1, H'-6, W'-6); (B, 1024, 1, 1, 1) at 16x224
        logits = self.logits(pooled)                   # (B, 400, T'-1, H'-6, W'-6)
        logits = logits.mean(dim=(3, 4)).mean(dim=2)   # spatial squeeze, then mean over time: (B, 400)
        return features, logits
