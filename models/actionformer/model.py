"""ActionFormer-style detector (Zhang et al. 2022) on (B, C, T) features; segments in input feature steps."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tal_pipeline.models.actionformer.backbone import ActionFormerBackbone
from tal_pipeline.models.actionformer.heads import ClsHead, RegHead
from tal_pipeline.models.actionformer.losses import diou_loss, sigmoid_focal_loss, smooth_labels
from tal_pipeline.models.actionformer.neck import PyramidNorm
from tal_pipeline.models.actionformer.targets import assign_targets, regression_ranges_for
from tal_pipeline.models.nms import select_batch_detections


class ActionFormer(nn.Module):
    """Conv embedding + local-window transformer encoder, strided pyramid, LayerNorm neck, shared heads,
    focal + DIoU losses over an EMA of the positive count, Soft-NMS.

    Every keyword argument is a JSON value (checkpoints record them and rebuild the model from them).
    regression_ranges: [[lo, hi], ...] per level in input steps (hi None = open-ended); None: the defaults.
    layer_scale_init: initial per-channel LayerScale of every residual branch (None: no LayerScale). The
    reference's 1e-4, kept by the held-out selection protocol (docs/method.md §12): 1.0's gain was within its spread.
    distance_activation: "softplus" (keeps a gradient everywhere, docs/method.md §8) or "relu" (the reference's).
    window: one attention window, or one per level. Options of the published recipes (stages.detectors.recipes),
    off by default: abs_pe (sinusoidal position encoding after the embedding), label_smoothing (classification
    targets t (1 - eps) + eps / (C + 1)), topk_per_level (pre_nms_topk candidates per pyramid level rather than
    over all levels), min_duration (candidates no longer than it, in steps, are dropped before Soft-NMS).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, levels: int = 6, heads: int = 4,
                 window: int | list = 9, embed_convs: int = 2, stem_blocks: int = 2, mlp_ratio: int = 4,
                 dropout: float = 0.0, drop_path: float = 0.1, layer_scale_init: float | None = 1e-4,
                 head_convs: int = 2, cls_prior: float = 0.01, regression_ranges: list | None = None,
                 center_radius: float = 1.5, reg_weight: float = 1.0, focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, loss_norm_init: float = 100.0, loss_norm_momentum: float = 0.9,
                 score_thresh: float = 1e-3, pre_nms_topk: int = 2000, nms_sigma: float = 0.5, max_dets: int = 200,
                 distance_activation: str = "softplus", abs_pe: bool = False, label_smoothing: float = 0.0,
                 topk_per_level: bool = False, min_duration: float = 0.0):
        super().__init__()
        self.num_classes, self.levels = num_classes, levels
        self.label_smoothing, self.topk_per_level = float(label_smoothing), bool(topk_per_level)
        self.min_duration = float(min_duration)  # the references' duration_thresh, in input steps
        self.strides = [2 ** i for i in range(levels)]
        self.size_divisor = self.strides[-1]
        self.regression_ranges = regression_ranges_for(levels, regression_ranges)
        self.center_radius, self.reg_weight = center_radius, reg_weight
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        # EMA of the number of positives per batch (a plain float: not in state_dict, checkpoints load strictly);
        # dividing by it rather than by the batch's own count keeps the loss scale steady on small batches.
        self.loss_normalizer, self.loss_norm_momentum = float(loss_norm_init), float(loss_norm_momentum)
        self.score_thresh, self.pre_nms_topk = score_thresh, pre_nms_topk
        self.nms_sigma, self.max_dets = nms_sigma, max_dets
        self.backbone = ActionFormerBackbone(in_channels, width, levels, heads, window, embed_convs, stem_blocks,
                                             mlp_ratio, dropout, drop_path, layer_scale_init, abs_pe)
        self.neck = PyramidNorm(width, levels)
        self.cls_head = ClsHead(width, num_classes, head_convs, cls_prior)
        self.reg_head = RegHead(width, levels, head_convs, distance_activation)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> dict:
        # features: (B, C, T) float; mask: (B, T) bool, True on real steps
        t = features.shape[-1]
        pad = (-t) % self.size_divisor
        x = F.pad(features, (0, pad))  # (B, C, T')
        mask = F.pad(mask.bool(), (0, pad), value=False)  # (B, T')
        feats, masks = self.backbone(x, mask)  # [(B, D, T_l)], [(B, T_l)]
        feats = self.neck(feats, masks)  # [(B, D, T_l)]
        logits, dists, positions, strides, ranges = [], [], [], [], []
        for level, (f, m) in enumerate(zip(feats, masks)):
            stride = self.strides[level]
            logits.append(self.cls_head(f, m).transpose(1, 2))  # (B, T_l, C)
            dists.append(self.reg_head(f, m, level).transpose(1, 2))  # (B, T_l, 2) in stride units
            n, fp32 = f.shape[-1], torch.float32  # coordinates in fp32, whatever the activations' (bf16) dtype
            positions.append(torch.arange(n, device=f.device, dtype=fp32) * stride)
            strides.append(torch.full((n,), float(stride), device=f.device, dtype=fp32))
            ranges.append(torch.tensor(self.regression_ranges[level], device=f.device, dtype=fp32).expand(n, 2))
        return {"logits": torch.cat(logits, 1), "dists": torch.cat(dists, 1), "valid": torch.cat(masks, 1),
                "positions": torch.cat(positions), "strides": torch.cat(strides), "ranges": torch.cat(ranges)}
        # logits (B, K, C), dists (B, K, 2), valid (B, K), positions/strides (K,), ranges (K, 2)

    def _assign(self, outputs: dict, targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per video: cls targets (K, C), regression targets (K, 2) in stride units, foreground (K,) on valid steps."""
        pos, strides, ranges = outputs["positions"], outputs["strides"], outputs["ranges"]
        out = []
        for b, tgt in enumerate(targets):
            cls_t, reg_t, fg = assign_targets(pos, strides, ranges, tgt["segments"].to(pos.device, pos.dtype),
                                              tgt["labels"].to(pos.device), self.num_classes, self.center_radius)
            out.append((cls_t, reg_t, fg & outputs["valid"][b]))
        return out

    def loss(self, outputs: dict, targets: list[dict]) -> dict:
        """targets[b] = {"segments": (M, 2) float in input steps, "labels": (M,) long, 0-based}.

        total = (focal + reg_weight * DIoU) / EMA(#positives); "reg_mean" = DIoU per positive (for monitoring).
        """
        cls_rows, cls_tgts, reg_rows, reg_tgts = [], [], [], []
        for b, (cls_t, reg_t, fg) in enumerate(self._assign(outputs, targets)):
            v = outputs["valid"][b]
            cls_rows.append(outputs["logits"][b][v])  # (K_valid, C)
            cls_tgts.append(cls_t[v])
            reg_rows.append(outputs["dists"][b][fg])  # (K_fg, 2)
            reg_tgts.append(reg_t[fg])
        reg_pred = torch.cat(reg_rows)  # (N_pos, 2)
        n_pos = reg_pred.shape[0]
        if self.training:  # the normaliser only learns from training batches
            m = self.loss_norm_momentum
            self.loss_normalizer = m * self.loss_normalizer + (1.0 - m) * max(n_pos, 1)
        cls_t = smooth_labels(torch.cat(cls_tgts), self.label_smoothing)
        cls = sigmoid_focal_loss(torch.cat(cls_rows), cls_t, self.focal_alpha, self.focal_gamma)
        reg_sum = diou_loss(reg_pred, torch.cat(reg_tgts))  # 0 when there is no positive
        cls, reg = cls / self.loss_normalizer, reg_sum / self.loss_normalizer
        return {"total": cls + self.reg_weight * reg, "cls": cls, "reg": reg,
                "reg_mean": reg_sum.detach() / max(n_pos, 1)}

    @torch.no_grad()
    def regression_health(self, outputs: dict, targets: list[dict], min_dist: float = 1e-3) -> dict:
        """Is the regression branch alive? fg_locations: assigned-positive valid locations; positive_share: share of
        them whose predicted start AND end distances both exceed min_dist stride units (NaN when there is none)."""
        fg_total, alive = 0, 0
        for b, (_, _, fg) in enumerate(self._assign(outputs, targets)):
            d = outputs["dists"][b][fg]  # (K_fg, 2) in stride units
            fg_total += int(fg.sum())
            alive += int(((d[:, 0] > min_dist) & (d[:, 1] > min_dist)).sum())
        return {"fg_locations": fg_total, "positive_share": alive / fg_total if fg_total else float("nan")}

    @torch.no_grad()
    def predict(self, outputs: dict, score_thresh: float | None = None, max_dets: int | None = None,
                nms_sigma: float | None = None, voting_thresh: float = 0.0
                ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per video: (segments (N, 2) in input steps, scores (N,), labels (N,) 0-based), best first."""
        scores = torch.sigmoid(outputs["logits"])  # (B, K, C)
        d = outputs["dists"] * outputs["strides"][None, :, None]  # (B, K, 2) in input steps
        segs = torch.stack([outputs["positions"] - d[..., 0], outputs["positions"] + d[..., 1]], dim=-1)  # (B, K, 2)
        return select_batch_detections(segs, scores, outputs["valid"], self, score_thresh, max_dets, nms_sigma,
                                       voting_thresh, levels=outputs["strides"] if self.topk_per_level else None)
