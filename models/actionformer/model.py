"""ActionFormer-style detector (Zhang et al. 2022) on (B, C, T) features; segments in input feature steps."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.actionformer.backbone import ActionFormerBackbone
from models.actionformer.heads import ClsHead, RegHead
from models.actionformer.losses import diou_loss, sigmoid_focal_loss
from models.actionformer.targets import assign_targets, default_regression_ranges
from models.nms import select_detections


class ActionFormer(nn.Module):
    """Local-window transformer encoder, strided pyramid, shared heads, focal + DIoU, Soft-NMS."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, levels: int = 6, heads: int = 4,
                 window: int = 9, embed_convs: int = 2, stem_blocks: int = 2, dropout: float = 0.0,
                 regression_ranges: list | None = None, center_radius: float = 1.5, reg_weight: float = 1.0,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0, score_thresh: float = 1e-3,
                 pre_nms_topk: int = 2000, nms_sigma: float = 0.5, max_dets: int = 200):
        super().__init__()
        self.num_classes, self.levels = num_classes, levels
        self.strides = [2 ** i for i in range(levels)]
        self.size_divisor = self.strides[-1]
        ranges = regression_ranges or default_regression_ranges(levels)
        if len(ranges) != levels:
            raise ValueError(f"{len(ranges)} regression ranges given for {levels} pyramid levels")
        self.regression_ranges = [(float(a), float(b)) for a, b in ranges]
        self.center_radius, self.reg_weight = center_radius, reg_weight
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.score_thresh, self.pre_nms_topk, self.nms_sigma, self.max_dets = score_thresh, pre_nms_topk, nms_sigma, max_dets
        self.backbone = ActionFormerBackbone(in_channels, width, levels, heads, window, embed_convs, stem_blocks,
                                             dropout)
        self.cls_head = ClsHead(width, num_classes)
        self.reg_head = RegHead(width, levels)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> dict:
        # features: (B, C, T) float; mask: (B, T) bool, True on real steps
        t = features.shape[-1]
        pad = (-t) % self.size_divisor
        x = F.pad(features, (0, pad))  # (B, C, T')
        mask = F.pad(mask.bool(), (0, pad), value=False)  # (B, T')
        feats, masks = self.backbone(x, mask)  # [(B, D, T_l)], [(B, T_l)]
        logits, dists, positions, strides, ranges = [], [], [], [], []
        for level, (f, m) in enumerate(zip(feats, masks)):
            stride = self.strides[level]
            logits.append(self.cls_head(f, m).transpose(1, 2))  # (B, T_l, C)
            dists.append(self.reg_head(f, m, level).transpose(1, 2))  # (B, T_l, 2) in stride units
            n = f.shape[-1]
            positions.append(torch.arange(n, device=f.device, dtype=f.dtype) * stride)
            strides.append(torch.full((n,), float(stride), device=f.device, dtype=f.dtype))
            ranges.append(torch.tensor(self.regression_ranges[level], device=f.device, dtype=f.dtype).expand(n, 2))
        return {"logits": torch.cat(logits, 1), "dists": torch.cat(dists, 1), "valid": torch.cat(masks, 1),
                "positions": torch.cat(positions), "strides": torch.cat(strides), "ranges": torch.cat(ranges)}
        # logits (B, K, C), dists (B, K, 2), valid (B, K), positions/strides (K,), ranges (K, 2)

    def loss(self, outputs: dict, targets: list[dict]) -> dict:
        """targets[b] = {"segments": (M, 2) float in input steps, "labels": (M,) long, 0-based}."""
        pos, strides, ranges = outputs["positions"], outputs["strides"], outputs["ranges"]
        cls_rows, cls_tgts, reg_rows, reg_tgts = [], [], [], []
        for b, tgt in enumerate(targets):
            cls_t, reg_t, fg = assign_targets(pos, strides, ranges, tgt["segments"].to(pos.device, pos.dtype),
                                              tgt["labels"].to(pos.device), self.num_classes, self.center_radius)
            v = outputs["valid"][b]
            cls_rows.append(outputs["logits"][b][v])
            cls_tgts.append(cls_t[v])
            reg_rows.append(outputs["dists"][b][v & fg])
            reg_tgts.append(reg_t[v & fg])
        reg_pred = torch.cat(reg_rows)
        n_pos = max(reg_pred.shape[0], 1)
        cls = sigmoid_focal_loss(torch.cat(cls_rows), torch.cat(cls_tgts), self.focal_alpha, self.focal_gamma) / n_pos
        reg = diou_loss(reg_pred, torch.cat(reg_tgts)) / n_pos
        return {"total": cls + self.reg_weight * reg, "cls": cls, "reg": reg}

    @torch.no_grad()
    def predict(self, outputs: dict, score_thresh: float | None = None, max_dets: int | None = None,
                nms_sigma: float | None = None) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per video: (segments (N, 2) in input steps, scores (N,), labels (N,) 0-based), best first."""
        thr = self.score_thresh if score_thresh is None else score_thresh
        cap = self.max_dets if max_dets is None else max_dets
        sigma = self.nms_sigma if nms_sigma is None else nms_sigma
        scores = torch.sigmoid(outputs["logits"])  # (B, K, C)
        d = outputs["dists"] * outputs["strides"][None, :, None]  # (B, K, 2) in input steps
        segs = torch.stack([outputs["positions"] - d[..., 0], outputs["positions"] + d[..., 1]], dim=-1)  # (B, K, 2)
        return [select_detections(segs[b], scores[b], outputs["valid"][b], thr, self.pre_nms_topk, sigma, cap)
                for b in range(segs.shape[0])]
