"""AFSD (Lin et al. 2021) on per-step features: forward, loss (eq. 6-14), predict (eq. 15 + Soft-NMS)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tal_pipeline.models.afsd.bcl import build_contrastive_clips
from tal_pipeline.models.afsd.boundary_pooling import boundary_max_pool, boundary_regions
from tal_pipeline.models.afsd.heads import CoarseHead, RefineBranch, decode_coarse
from tal_pipeline.models.afsd.losses import (
    activation_guided_loss,
    afsd_total,
    boundary_targets,
    boundary_triplet_loss,
    offset_l1_loss,
    quality_loss,
    segment_tiou,
    softmax_focal_loss,
    tiou_loss,
)
from tal_pipeline.models.afsd.pyramid import TemporalPyramid
from tal_pipeline.models.afsd.targets import coarse_targets, offset_targets, refined_targets
from tal_pipeline.models.nms import select_batch_detections


def refine_segments(coarse: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Eq. 15: psi~ = psi^ + w^/2 * dpsi, xi~ = xi^ + w^/2 * dxi. coarse, offsets (..., 2) -> (..., 2)."""
    w = (coarse[..., 1] - coarse[..., 0])[..., None]
    return coarse + 0.5 * w * offsets


def fuse_scores(logits_c: torch.Tensor, logits_r: torch.Tensor, quality_logit: torch.Tensor) -> torch.Tensor:
    """Eq. 15: y = (y^C + y^R) / 2 * eta, per foreground class. (..., K+1), (..., K+1), (...) -> (..., K)."""
    p_c = F.softmax(logits_c, dim=-1)[..., 1:]
    p_r = F.softmax(logits_r, dim=-1)[..., 1:]
    return 0.5 * (p_c + p_r) * torch.sigmoid(quality_logit)[..., None]


class AFSD(nn.Module):
    """Anchor-free saliency-based detector on (B, C, T) features. Segments are in input feature steps."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 128, levels: int = 5,
                 delta_a: float = 4.0, delta_b: float = 10.0, delta_b_con: float = 100.0, lam: float = 10.0,
                 gamma_q: float = 1.0, con_weight: float = 1.0, focal_gamma: float = 2.0,
                 refine_iou: float = 0.5, act_radius_min: float = 1.0, act_radius_ratio: float = 0.1,
                 trip_margin: float = 1.0, score_thresh: float = 1e-3, pre_nms_topk: int = 2000,
                 nms_sigma: float = 0.5, max_dets: int = 200):
        super().__init__()
        self.num_classes, self.levels = num_classes, levels
        self.strides = [2 ** i for i in range(levels)]
        self.size_divisor = self.strides[-1]
        self.delta_a, self.delta_b, self.delta_b_con = delta_a, delta_b, delta_b_con
        self.lam, self.gamma_q, self.con_weight, self.focal_gamma = lam, gamma_q, con_weight, focal_gamma
        self.refine_iou, self.trip_margin = refine_iou, trip_margin
        self.act_radius_min, self.act_radius_ratio = act_radius_min, act_radius_ratio
        self.score_thresh, self.pre_nms_topk = score_thresh, pre_nms_topk
        self.nms_sigma, self.max_dets = nms_sigma, max_dets
        self.pyramid = TemporalPyramid(in_channels, width, levels)
        self.coarse = CoarseHead(width, num_classes, levels)
        self.refine_loc = RefineBranch(width)
        self.refine_cls = RefineBranch(width)
        self.offset_out = nn.Conv1d(width, 2, 3, padding=1)  # (d psi, d xi)
        self.quality_out = nn.Conv1d(width, 1, 3, padding=1)  # eta (eq. 14)
        self.cls_ref_out = nn.Conv1d(width, num_classes + 1, 3, padding=1)
        # Background-heavy prior, as focal-loss detectors do, so early training is not swamped.
        for conv in (self.coarse.cls_out, self.cls_ref_out):
            nn.init.constant_(conv.bias, 0.0)
            with torch.no_grad():
                conv.bias[0] = 4.0

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> dict:
        # features: (B, C, T) float; mask: (B, T) bool, True on real steps (a prefix of each row)
        b, _, t = features.shape
        pad = (-t) % self.size_divisor
        x = F.pad(features, (0, pad))  # (B, C, T')
        mask = F.pad(mask.bool(), (0, pad), value=False)  # (B, T')
        lengths = mask.sum(dim=1)  # (B,)
        frame, feats, masks = self.pyramid(x, mask)  # (B, D, T'), [(B, D, T_l)], [(B, T_l)]
        loc_fs, loc_fe = self.refine_loc.frame_features(frame)  # (B, D, T') ~f^s, ~f^e
        cls_fs, cls_fe = self.refine_cls.frame_features(frame)
        out = {k: [] for k in ("positions", "coarse", "offsets", "quality", "logits_c", "logits_r", "valid")}
        for level, (f, m) in enumerate(zip(feats, masks)):
            stride = self.strides[level]
            f_loc, f_cls, dist, logits_c = self.coarse(f, level, stride)  # (B, D, T_l) x2, (B, 2, T_l), (B, K+1, T_l)
            start, end = decode_coarse(dist, stride)  # (B, T_l) eq. 1
            t_s, t_e = boundary_regions(start.detach(), end.detach(), self.delta_a, self.delta_b)  # (B, T_l, 2) eq. 3
            r_loc = self.refine_loc(f_loc, loc_fs, loc_fe, t_s, t_e, stride, lengths)  # (B, D, T_l) eq. 5
            r_cls = self.refine_cls(f_cls, cls_fs, cls_fe, t_s, t_e, stride, lengths)
            out["positions"].append(torch.arange(f.shape[-1], device=f.device, dtype=torch.float32) * stride)
            out["coarse"].append(torch.stack([start, end], dim=-1))  # (B, T_l, 2)
            out["offsets"].append(self.offset_out(r_loc).transpose(1, 2))  # (B, T_l, 2)
            out["quality"].append(self.quality_out(r_loc)[:, 0])  # (B, T_l)
            out["logits_c"].append(logits_c.transpose(1, 2))  # (B, T_l, K+1)
            out["logits_r"].append(self.cls_ref_out(r_cls).transpose(1, 2))  # (B, T_l, K+1)
            out["valid"].append(m)
        out = {k: torch.cat(v, dim=-1 if k in ("positions", "quality", "valid") else 1) for k, v in out.items()}
        out.update(frame_s=loc_fs, frame_e=loc_fe, mask=mask, lengths=lengths, features=x)
        return out  # positions (K,), coarse/offsets (B, K, 2), quality/valid (B, K), logits (B, K, K+1)

    # ------------------------------------------------------------------ training
    def loss(self, outputs: dict, targets: list[dict]) -> dict:
        """targets[b] = {"segments": (M, 2) float in input steps, "labels": (M,) long, 0-based}."""
        pos = outputs["positions"]
        rows = {k: [] for k in ("lc", "yc", "pc", "gc", "lr", "yr", "off", "goff", "q", "qt")}
        g_s, g_e = [], []
        t_full = outputs["mask"].shape[1]
        for b, tgt in enumerate(targets):
            segs = tgt["segments"].to(pos.device, pos.dtype)
            labs = tgt["labels"].to(pos.device).long()
            v = outputs["valid"][b]  # (K,)
            y_c, gt_c = coarse_targets(pos, segs, labs)  # (K,), (K, 2)
            coarse = outputs["coarse"][b]  # (K, 2)
            y_r, gt_r = refined_targets(coarse.detach(), segs, labs, self.refine_iou)
            rows["lc"].append(outputs["logits_c"][b][v])
            rows["yc"].append(y_c[v])
            fg_c = v & (y_c > 0)
            rows["pc"].append(coarse[fg_c])
            rows["gc"].append(gt_c[fg_c])
            rows["lr"].append(outputs["logits_r"][b][v])
            rows["yr"].append(y_r[v])
            fg_r = v & (y_r > 0)
            off = outputs["offsets"][b][fg_r]  # (N_R, 2)
            rows["off"].append(off)
            rows["goff"].append(offset_targets(coarse.detach()[fg_r], gt_r[fg_r]))
            rows["q"].append(outputs["quality"][b][fg_r])
            refined = refine_segments(coarse.detach()[fg_r], off.detach())
            rows["qt"].append(segment_tiou(refined, gt_r[fg_r]))  # eq. 14 target
            s_b, e_b = boundary_targets(segs, t_full, self.act_radius_min, self.act_radius_ratio)  # eq. 7
            g_s.append(s_b)
            g_e.append(e_b)
        cat = {k: torch.cat(v) for k, v in rows.items()}
        n_c = max(int((cat["yc"] > 0).sum()), 1)
        n_r = max(int((cat["yr"] > 0).sum()), 1)
        cls_c = softmax_focal_loss(cat["lc"], cat["yc"], self.focal_gamma) / n_c  # eq. 12
        loc_c = tiou_loss(cat["pc"], cat["gc"]) / n_c  # eq. 13 coarse
        cls_r = softmax_focal_loss(cat["lr"], cat["yr"], self.focal_gamma) / n_r
        loc_r = offset_l1_loss(cat["off"], cat["goff"]) / n_r  # eq. 13 refined
        q = quality_loss(cat["q"], cat["qt"]) / n_r  # eq. 14
        main = afsd_total(cls_c, loc_c, cls_r, loc_r, q, self.lam, self.gamma_q)  # eq. 11
        act = activation_guided_loss(outputs["frame_s"], outputs["frame_e"], torch.stack(g_s), torch.stack(g_e),
                                     outputs["mask"])  # eq. 6-8
        trip = self.triplet_loss(outputs["features"], outputs["lengths"], targets)  # eq. 9
        total = main + self.con_weight * (act + trip)  # eq. 10 added to eq. 11 in one step
        return {"total": total, "cls_coarse": cls_c, "loc_coarse": loc_c, "cls_refined": cls_r,
                "loc_refined": loc_r, "quality": q, "act": act, "triplet": trip}

    def triplet_loss(self, x: torch.Tensor, lengths: torch.Tensor, targets: list[dict]) -> torch.Tensor:
        """Eq. 9 on A1 | Bg | A2 clips; pooled features are L2-normalised so the margin of 1 has a scale."""
        built = build_contrastive_clips(x, lengths, targets)
        if built is None:
            return x.new_zeros(())
        clips, clip_len, pieces = built  # (N, C, L), (N,), (N, 3, 2)
        cmask = torch.arange(clips.shape[-1], device=x.device)[None, :] < clip_len[:, None]  # (N, L)
        m = cmask[:, None, :].to(x.dtype)
        frame = self.pyramid.frame(self.pyramid.proj(clips) * m) * m  # (N, D, L)
        f_s, f_e = self.refine_loc.frame_features(frame)  # (N, D, L)
        r_s, r_e = boundary_regions(pieces[..., 0], pieces[..., 1], self.delta_a, self.delta_b_con)  # (N, 3, 2)
        pooled_s = F.normalize(boundary_max_pool(f_s, r_s, clip_len), dim=1)  # (N, D, 3): A1, Bg, A2
        pooled_e = F.normalize(boundary_max_pool(f_e, r_e, clip_len), dim=1)
        a1_e, a2_s = pooled_e[:, :, 0], pooled_s[:, :, 2]  # (N, D)
        bg_s, bg_e = pooled_s[:, :, 1], pooled_e[:, :, 1]
        return 0.5 * (boundary_triplet_loss(a1_e, a2_s, bg_s, self.trip_margin)
                      + boundary_triplet_loss(a1_e, a2_s, bg_e, self.trip_margin))

    @torch.no_grad()
    def regression_health(self, outputs: dict, targets: list[dict]) -> dict:
        """Share of foreground locations (eq. 1 positives) whose coarse start and end distances are both > 1e-3 steps.

        A run whose distance outputs collapsed to 0 on the foreground has stopped learning where actions end.
        """
        pos = outputs["positions"]  # (K,)
        fg_count, positive = 0, 0
        for b, tgt in enumerate(targets):
            y_c, _ = coarse_targets(pos, tgt["segments"].to(pos.device, pos.dtype), tgt["labels"].to(pos.device).long())
            fg = outputs["valid"][b] & (y_c > 0)  # (K,)
            coarse = outputs["coarse"][b][fg]  # (N, 2) start, end in steps
            d = torch.stack([pos[fg] - coarse[:, 0], coarse[:, 1] - pos[fg]], dim=1)  # (N, 2) distances
            fg_count += int(fg.sum())
            positive += int((d > 1e-3).all(dim=1).sum())
        return {"fg_locations": fg_count, "positive_share": positive / fg_count if fg_count else None}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, outputs: dict, score_thresh: float | None = None, max_dets: int | None = None,
                nms_sigma: float | None = None, voting_thresh: float = 0.0
                ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per video: (segments (N, 2) in input steps, scores (N,), labels (N,) 0-based), best first."""
        scores = fuse_scores(outputs["logits_c"], outputs["logits_r"], outputs["quality"])  # (B, K, C) eq. 15
        segs = refine_segments(outputs["coarse"], outputs["offsets"])  # (B, K, 2) eq. 15
        return select_batch_detections(segs, scores, outputs["valid"], self, score_thresh, max_dets, nms_sigma,
                                       voting_thresh)

