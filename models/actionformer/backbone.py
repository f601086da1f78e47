"""ActionFormer backbone: conv embedding, local-attention stem, strided transformer branch (the pyramid)."""
from __future__ import annotations

import torch
from torch import nn

from tal_pipeline.models.actionformer.blocks import MaskedConv
from tal_pipeline.models.actionformer.position import sinusoid_position
from tal_pipeline.models.actionformer.transformer import LocalTransformerBlock


class PyramidBackbone(nn.Module):
    """A conv embedding (self.embed), a full-resolution stem (self.stem) and one stride-2 block per further
    pyramid level (self.branch); each block maps (x, mask) -> (x, mask). ActionFormer's and TriDet's backbones
    differ only in their blocks. abs_pe: a sinusoidal position encoding is added to the embedded features on real
    steps (the references' use_abs_pe)."""

    abs_pe = False

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        # x: (B, C_in, T), mask: (B, T) bool, T divisible by 2^(levels-1)
        for conv in self.embed:
            x = conv(x, mask)  # (B, D, T), zero on padded steps
        if self.abs_pe:
            x = x + sinusoid_position(x.shape[-1], x.shape[1], x.device, x.dtype) * mask[:, None, :].to(x.dtype)
        for block in self.stem:
            x, mask = block(x, mask)  # (B, D, T)
        feats, masks = [x], [mask]
        for block in self.branch:
            x, mask = block(x, mask)  # (B, D, T_l), (B, T_l) with T_l = T_{l-1} / 2, mask = previous mask[:, ::2]
            feats.append(x)
            masks.append(mask)
        return feats, masks


class ActionFormerBackbone(PyramidBackbone):
    """(B, C_in, T) -> pyramid [(B, D, T / 2^l)] with masks [(B, T / 2^l)], l = 0 .. levels-1.

    Level 0 is the stem output; each further level is one stride-2 transformer block on the previous one.
    window: one attention window for every level, or one per level ([w_0, .., w_{levels-1}]: the stem's, then each
    stride-2 block's, as the reference's n_mha_win_size list).
    """

    def __init__(self, in_channels: int, width: int, levels: int, heads: int, window: int | list[int],
                 embed_convs: int = 2, stem_blocks: int = 2, mlp_ratio: int = 4, dropout: float = 0.0,
                 drop_path: float = 0.1, layer_scale_init: float | None = 1e-4, abs_pe: bool = False):
        super().__init__()
        windows = [int(w) for w in window] if isinstance(window, (list, tuple)) else [int(window)] * levels
        if len(windows) != levels:
            raise ValueError(f"{len(windows)} attention windows given for {levels} pyramid levels")
        self.abs_pe = bool(abs_pe)
        block = dict(mlp_ratio=mlp_ratio, dropout=dropout, drop_path=drop_path, layer_scale_init=layer_scale_init)
        self.embed = nn.ModuleList([MaskedConv(in_channels if i == 0 else width, width) for i in range(embed_convs)])
        self.stem = nn.ModuleList([LocalTransformerBlock(width, heads, windows[0], stride=1, **block)
                                   for _ in range(stem_blocks)])
        self.branch = nn.ModuleList([LocalTransformerBlock(width, heads, windows[1 + i], stride=2, **block)
                                     for i in range(levels - 1)])
        for m in self.modules():  # zero biases, as in the reference (LayerNorm biases are zero already)
            if isinstance(m, (nn.Conv1d, nn.Linear)) and m.bias is not None:
                nn.init.zeros_(m.bias)
