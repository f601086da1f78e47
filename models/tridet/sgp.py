"""TriDet's Scalable-Granularity Perception (SGP) layer (Shi et al. 2023, §3.2), on (B, D, T) with a (B, T) mask.

With z = LN(x) on the real steps (zero on padded ones), the paper's f_SGP on z:

    f_SGP(z) = phi(z) * FC(z) + psi(z) * (Conv_w(z) + Conv_kw(z)) + z
    phi(z)   = ReLU(FC(AvgPool(z)))        psi(z) = Conv_w'(z)

- instant-level branch phi(z) * FC(z): a depthwise 1x1 conv of every step, gated per channel by the ReLU of a
  depthwise 1x1 conv of the temporal mean (over the real steps only: the padded tail must not move it);
- window-level branch: depthwise convs of kernel w and k_w = round((w + 1) k) (made odd, so it differs from w
  and stays centred), gated by a third depthwise conv psi of kernel w;
then the pre-norm residual x + DropPath(f_SGP(LN x)), and GroupNorm + MLP as a second residual. With stride 2
the layer first max-pools its input (kernel 3, over real steps only) and works on the coarser grid.

Padded steps never reach real ones: every conv reads z, which is zero there (as a zero-padded end of the
sequence would be), the mean and the GroupNorm statistics count real steps only, and outputs are re-masked.
"""
from __future__ import annotations

import torch
from torch import nn

from tal_pipeline.models.actionformer.blocks import ChannelNorm, masked_max_pool
from tal_pipeline.models.actionformer.droppath import drop_path
from tal_pipeline.models.tridet.groupnorm import MaskedGroupNorm


def long_kernel(window: int, k: float) -> int:
    """k_w = round((w + 1) k), plus 1 when even (a centred depthwise conv needs an odd kernel)."""
    size = int(round((window + 1) * k))
    return size + 1 if size % 2 == 0 else size


def _depthwise(width: int, kernel: int) -> nn.Conv1d:
    return nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=width)


class SGPLayer(nn.Module):
    """(B, D, T), mask (B, T) -> (B, D, T / stride), mask (B, T / stride); zero on padded steps.

    window: w (odd); k: the scale of the long kernel; mlp_ratio: MLP hidden width / D; groups: GroupNorm groups;
    drop_path: stochastic depth of both residual branches; layer_scale_init: initial per-channel scale of both
    branches (None: none); init_std: the SGP convs' weights start as N(0, init_std^2), biases 0 (0 would freeze
    the whole token mixer: each product's two factors start at 0, so neither ever gets a gradient).
    """

    def __init__(self, width: int, window: int = 1, k: float = 5.0, stride: int = 1, mlp_ratio: float = 1.5,
                 groups: int = 16, drop_path: float = 0.0, layer_scale_init: float | None = None,
                 init_std: float = 0.1):
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"SGP window must be an odd kernel size >= 1, got {window}")
        if stride not in (1, 2):
            raise ValueError(f"SGP stride must be 1 or 2, got {stride}")
        self.stride, self.rate = stride, float(drop_path)
        self.norm = ChannelNorm(width)
        self.fc = _depthwise(width, 1)  # instant-level FC(z)
        self.global_fc = _depthwise(width, 1)  # FC(AvgPool(z)) inside phi
        self.conv_w = _depthwise(width, window)
        self.conv_kw = _depthwise(width, long_kernel(window, k))
        self.psi = _depthwise(width, window)
        for conv in (self.fc, self.global_fc, self.conv_w, self.conv_kw, self.psi):
            nn.init.normal_(conv.weight, 0.0, init_std)
            nn.init.zeros_(conv.bias)
        self.group_norm = MaskedGroupNorm(groups, width)
        hidden = int(round(mlp_ratio * width))
        self.mlp = nn.Sequential(nn.Conv1d(width, hidden, 1), nn.GELU(), nn.Conv1d(hidden, width, 1))
        # (D, 1) per-channel scale of each residual branch, or none
        init = None if layer_scale_init is None else float(layer_scale_init)
        self.scale_sgp = None if init is None else nn.Parameter(torch.full((width, 1), init))
        self.scale_mlp = None if init is None else nn.Parameter(torch.full((width, 1), init))

    def _path(self, branch: torch.Tensor, scale: nn.Parameter | None) -> torch.Tensor:
        if scale is not None:
            branch = branch * scale  # (B, D, T)
        return drop_path(branch, self.rate, self.training)

    def mix(self, z: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """f_SGP(z): z (B, D, T) zero on padded steps, m (B, 1, T) float mask -> (B, D, T)."""
        mean = z.sum(dim=-1, keepdim=True) / m.sum(dim=-1, keepdim=True).clamp(min=1.0)  # (B, D, 1) real steps
        phi = torch.relu(self.global_fc(mean))  # (B, D, 1): one gate per video and channel
        instant = phi * self.fc(z)  # (B, D, T)
        window = self.psi(z) * (self.conv_w(z) + self.conv_kw(z))  # (B, D, T)
        return (instant + window + z) * m  # (B, D, T)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, D, T), mask: (B, T) bool
        x = x * mask[:, None, :].to(x.dtype)  # (B, D, T)
        if self.stride > 1:
            x, mask = masked_max_pool(x, mask, self.stride)  # (B, D, T/2), (B, T/2) = mask[:, ::2]
        m = mask[:, None, :].to(x.dtype)  # (B, 1, T')
        z = self.norm(x) * m  # (B, D, T') pre-norm, zero on padded steps
        h = x + self._path(self.mix(z, m), self.scale_sgp)  # (B, D, T')
        h = h + self._path(self.mlp(self.group_norm(h, mask)) * m, self.scale_mlp)  # (B, D, T')
        return h, mask
