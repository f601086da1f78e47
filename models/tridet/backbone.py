"""TriDet backbone, arch (embedding convs, stem SGP layers, down-sampling SGP layers) = (2, 2, 5) by default:
conv embedding, SGP stem at full resolution, then one stride-2 SGP layer per further pyramid level (§3.2)."""
from __future__ import annotations

from torch import nn

from tal_pipeline.models.actionformer.backbone import PyramidBackbone
from tal_pipeline.models.actionformer.blocks import MaskedConv
from tal_pipeline.models.tridet.sgp import SGPLayer


class TriDetBackbone(PyramidBackbone):
    """(B, C_in, T) -> pyramid [(B, D, T / 2^l)] with masks [(B, T / 2^l)], l = 0 .. levels-1.

    Level 0 is the stem output; level l is one stride-2 SGP layer on level l-1 (levels = 6: strides 1 .. 32).
    As in the reference, the stem layers have neither drop path nor LayerScale; the down-sampling layers have both.
    """

    def __init__(self, in_channels: int, width: int, levels: int, embed_convs: int = 2, stem_layers: int = 2,
                 window: int = 1, k: float = 5.0, mlp_ratio: float = 1.5, groups: int = 16, drop_path: float = 0.1,
                 layer_scale_init: float | None = 1e-4, init_std: float = 0.1, abs_pe: bool = False):
        super().__init__()
        self.abs_pe = bool(abs_pe)  # the reference's use_abs_pe (its ActivityNet config), after the embedding
        sgp = dict(window=window, k=k, mlp_ratio=mlp_ratio, groups=groups, init_std=init_std)
        self.embed = nn.ModuleList([MaskedConv(in_channels if i == 0 else width, width) for i in range(embed_convs)])
        self.stem = nn.ModuleList([SGPLayer(width, stride=1, **sgp) for _ in range(stem_layers)])
        self.branch = nn.ModuleList([SGPLayer(width, stride=2, drop_path=drop_path,
                                              layer_scale_init=layer_scale_init, **sgp) for _ in range(levels - 1)])
        for m in self.modules():  # every conv bias starts at 0, as in the reference
            if isinstance(m, nn.Conv1d) and m.bias is not None:
                nn.init.zeros_(m.bias)
