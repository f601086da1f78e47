"""TriDet (Shi et al., CVPR 2023) on (B, C, T) features; segments in input feature steps.

SGP feature pyramid (models/tridet/backbone.py), ActionFormer's LayerNorm neck, label assignment, DIoU loss and
Soft-NMS (models/actionformer/, models/nms.py), the Trident-head (models/tridet/heads.py, boundaries.py) and the
IoU-weighted focal loss (models/tridet/losses.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tal_pipeline.models.actionformer.losses import diou_loss, smooth_labels
from tal_pipeline.models.actionformer.neck import PyramidNorm
from tal_pipeline.models.actionformer.targets import assign_targets, regression_ranges_for
from tal_pipeline.models.nms import select_batch_detections
from tal_pipeline.models.tridet.backbone import TriDetBackbone
from tal_pipeline.models.tridet.heads import TridentHead
from tal_pipeline.models.tridet.losses import iou_weighted_focal_loss, offset_iou


class TriDet(nn.Module):
    """Conv embedding + SGP stem, stride-2 SGP pyramid, LayerNorm neck, Trident-head, IoU-weighted focal + DIoU
    losses over an EMA of the positive count, Soft-NMS.

    Every keyword argument is a JSON value (checkpoints record them and rebuild the model from them). The defaults
    are the reference THUMOS14 configuration (configs/thumos_i3d.yaml of dingfengshi/TriDet) except where noted:
    arch (2, 2, 5) = embed_convs 2, stem_layers 2, levels - 1 = 5 down-sampling layers (6 levels, strides 1 .. 32);
    SGP window w = 1 and k = 5 (long kernel 11); num_bins 16; iou_weight_power 0.2; drop path 0.1; LayerScale 1e-4
    on the down-sampling layers; input noise 5e-4 (training only); regression ranges [0,4], [4,8], .., [64, inf).
    Departures: width 64 and an MLP of 1.5 x width (the reference's 512 / 768) for the small data, as the
    project's ActionFormer; sgp_init_std 0.1 where the THUMOS14 configuration has 0, which leaves the SGP convs at
    0 for good (each gated product has two zero factors, so neither gets a gradient: the token mixer never acts;
    the reference's HACS configuration uses 0.1).
    regression_ranges: [[lo, hi], ...] per level in input steps (hi None = open-ended); None: the defaults.
    outside_bin_logit: the boundary response of a Trident bin whose neighbour lies off the real steps (past the
    last one, before the first, or padded): 0 as the reference; None gives -inf, under which no segment can end
    after its level's last real location (an ablation: benchmarks/README.md measures what it costs).
    Options of the published recipes (stages.detectors.recipes), off by default: abs_pe, label_smoothing,
    topk_per_level and min_duration, as ActionFormer's (models/actionformer/model.py).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, levels: int = 6, embed_convs: int = 2,
                 stem_layers: int = 2, window: int = 1, k: float = 5.0, mlp_ratio: float = 1.5, groups: int = 16,
                 drop_path: float = 0.1, layer_scale_init: float | None = 1e-4, sgp_init_std: float = 0.1,
                 num_bins: int = 16, head_convs: int = 2, cls_prior: float = 0.01,
                 outside_bin_logit: float | None = 0.0, regression_ranges: list | None = None,
                 center_radius: float = 1.5, reg_weight: float = 1.0,
                 iou_weight_power: float = 0.2, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 loss_norm_init: float = 100.0, loss_norm_momentum: float = 0.9, input_noise: float = 5e-4,
                 score_thresh: float = 1e-3, pre_nms_topk: int = 2000, nms_sigma: float = 0.5, max_dets: int = 200,
                 abs_pe: bool = False, label_smoothing: float = 0.0, topk_per_level: bool = False,
                 min_duration: float = 0.0):
        super().__init__()
        self.label_smoothing, self.topk_per_level = float(label_smoothing), bool(topk_per_level)
        self.min_duration = float(min_duration)  # the references' duration_thresh, in input steps
        if num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}")
        self.num_classes, self.levels, self.num_bins = num_classes, levels, num_bins
        self.strides = [2 ** i for i in range(levels)]
        self.size_divisor = self.strides[-1]
        self.regression_ranges = regression_ranges_for(levels, regression_ranges)
        self.center_radius, self.reg_weight, self.iou_weight_power = center_radius, reg_weight, iou_weight_power
        self.focal_alpha, self.focal_gamma, self.input_noise = focal_alpha, focal_gamma, input_noise
        # EMA of the number of positive locations per batch (a plain float: not in state_dict), as ActionFormer's.
        self.loss_normalizer, self.loss_norm_momentum = float(loss_norm_init), float(loss_norm_momentum)
        self.score_thresh, self.pre_nms_topk = score_thresh, pre_nms_topk
        self.nms_sigma, self.max_dets = nms_sigma, max_dets
        self.backbone = TriDetBackbone(in_channels, width, levels, embed_convs, stem_layers, window, k, mlp_ratio,
                                       groups, drop_path, layer_scale_init, sgp_init_std, abs_pe)
        self.neck = PyramidNorm(width, levels)
        self.head = TridentHead(width, num_classes, levels, num_bins, head_convs, cls_prior, outside_bin_logit)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> dict:
        # features: (B, C, T) float; mask: (B, T) bool, True on real steps
        t = features.shape[-1]
        pad = (-t) % self.size_divisor
        x = F.pad(features, (0, pad))  # (B, C, T')
        mask = F.pad(mask.bool(), (0, pad), value=False)  # (B, T')
        if self.training and self.input_noise > 0:  # the reference's input noise, on real steps only
            x = x + torch.randn_like(x) * self.input_noise * mask[:, None, :].to(x.dtype)
        feats, masks = self.backbone(x, mask)  # [(B, D, T_l)], [(B, T_l)]
        feats = self.neck(feats, masks)  # [(B, D, T_l)]
        logits, dists, positions, strides, ranges = [], [], [], [], []
        for level, (f, m) in enumerate(zip(feats, masks)):
            lg, d = self.head(f, m, level)  # (B, T_l, C), (B, T_l, C, 2) in stride units
            logits.append(lg)
            dists.append(d)
            n, fp32 = f.shape[-1], torch.float32  # coordinates in fp32, whatever the activations' (bf16) dtype
            positions.append(torch.arange(n, device=f.device, dtype=fp32) * self.strides[level])
            strides.append(torch.full((n,), float(self.strides[level]), device=f.device, dtype=fp32))
            ranges.append(torch.tensor(self.regression_ranges[level], device=f.device, dtype=fp32).expand(n, 2))
        return {"logits": torch.cat(logits, 1), "dists": torch.cat(dists, 1), "valid": torch.cat(masks, 1),
                "positions": torch.cat(positions), "strides": torch.cat(strides), "ranges": torch.cat(ranges)}
        # logits (B, K, C), dists (B, K, C, 2) per class, valid (B, K), positions/strides (K,), ranges (K, 2)

    def _positives(self, outputs: dict, targets: list[dict]) -> list[tuple]:
        """Per video, on its valid locations only (K_v of them): cls targets (K_v, C); the positive (location,
        class) pairs as indices (P,), (P,) into them; their predicted and target distances (P, 2) in stride units
        (the pair's own class's boundaries); the number of foreground locations."""
        pos, strides, ranges = outputs["positions"], outputs["strides"], outputs["ranges"]
        out = []
        for b, tgt in enumerate(targets):
            cls_t, reg_t, fg = assign_targets(pos, strides, ranges, tgt["segments"].to(pos.device, pos.dtype),
                                              tgt["labels"].to(pos.device), self.num_classes, self.center_radius)
            v = outputs["valid"][b]  # (K,)
            cls_v, fg_v = cls_t[v], fg[v]  # (K_v, C), (K_v,)
            loc, cls = torch.nonzero(cls_v * fg_v[:, None].to(cls_v.dtype), as_tuple=True)  # (P,), (P,)
            out.append((cls_v, loc, cls, outputs["dists"][b][v][loc, cls], reg_t[v][loc], int(fg_v.sum())))
        return out

    def loss(self, outputs: dict, targets: list[dict]) -> dict:
        """targets[b] = {"segments": (M, 2) float in input steps, "labels": (M,) long, 0-based}.

        total = (IoU-weighted focal + reg_weight * DIoU) / EMA(#positive locations); the DIoU sums over positive
        (location, class) pairs (a location of a multi-label span regresses once per class, with that class's
        boundaries); "reg_mean" = DIoU per pair (for monitoring).
        """
        cls_sum, reg_sum, n_pos, n_pairs = 0.0, 0.0, 0, 0
        for b, (cls_v, loc, cls, pred, tgt, n_fg) in enumerate(self._positives(outputs, targets)):
            logits = outputs["logits"][b][outputs["valid"][b]]  # (K_v, C)
            cls_t = smooth_labels(cls_v, self.label_smoothing)  # positives stay (loc, cls): the IoU weight's rows
            cls_sum = cls_sum + iou_weighted_focal_loss(logits, cls_t, loc, cls, offset_iou(pred, tgt),
                                                        self.iou_weight_power, self.focal_alpha, self.focal_gamma)
            reg_sum = reg_sum + diou_loss(pred, tgt)  # 0 when there is no positive
            n_pos += n_fg
            n_pairs += int(loc.numel())
        if self.training:  # the normaliser only learns from training batches
            m = self.loss_norm_momentum
            self.loss_normalizer = m * self.loss_normalizer + (1.0 - m) * max(n_pos, 1)
        cls, reg = cls_sum / self.loss_normalizer, reg_sum / self.loss_normalizer
        return {"total": cls + self.reg_weight * reg, "cls": cls, "reg": reg,
                "reg_mean": reg_sum.detach() / max(n_pairs, 1)}

    @torch.no_grad()
    def predict(self, outputs: dict, score_thresh: float | None = None, max_dets: int | None = None,
                nms_sigma: float | None = None, voting_thresh: float = 0.0
                ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per video: (segments (N, 2) in input steps, scores (N,), labels (N,) 0-based), best first; every
        (location, class) candidate has its own class's boundaries."""
        scores = torch.sigmoid(outputs["logits"])  # (B, K, C)
        d = outputs["dists"] * outputs["strides"][None, :, None, None]  # (B, K, C, 2) in input steps
        p = outputs["positions"][None, :, None]  # (1, K, 1)
        segs = torch.stack([p - d[..., 0], p + d[..., 1]], dim=-1)  # (B, K, C, 2)
        return select_batch_detections(segs, scores, outputs["valid"], self, score_thresh, max_dets, nms_sigma,
                                       voting_thresh, levels=outputs["strides"] if self.topk_per_level else None)

    @torch.no_grad()
    def regression_health(self, outputs: dict, targets: list[dict], min_dist: float = 1e-3) -> dict:
        """Is the regression branch alive? fg_locations: assigned-positive valid locations; positive_share: share of
        the positive (location, class) pairs whose decoded start AND end distances of that class both exceed
        min_dist stride units (NaN when there is none)."""
        fg_total, pairs, alive = 0, 0, 0
        for _, loc, _, pred, _, n_fg in self._positives(outputs, targets):
            fg_total += n_fg
            pairs += int(loc.numel())
            alive += int(((pred[:, 0] > min_dist) & (pred[:, 1] > min_dist)).sum())
        return {"fg_locations": fg_total, "positive_share": alive / pairs if pairs else float("nan")}
