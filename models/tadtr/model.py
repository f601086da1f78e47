"""TadTR (Liu et al., IEEE TIP 2022, "End-to-end Temporal Action Detection with Transformer") on (B, C, T) snippet
features: input projection, deformable encoder, decoder of learned action queries with segment refinement,
actionness regression, set-prediction training by Hungarian matching; segments in input feature steps.

Coordinates inside the model are normalised to each video's (window's) real steps L: u = (step + 0.5) / L, and a
segment is (centre, width) in those units (models/tadtr/deformable_attention). The detector works on windows of
the training recipe's max_seq_len (the reference's 128 snippets on THUMOS14, stages/detectors/training.py); the
project's sliding-window inference (stages/detectors/detection.py) covers longer videos.
"""
from __future__ import annotations

import torch
from torch import nn

from tal_pipeline.models.nms import select_batch_detections
from tal_pipeline.models.segments import tiou
from tal_pipeline.models.tadtr.decoder import MLP, Decoder
from tal_pipeline.models.tadtr.embedding import InputProjection, sine_position
from tal_pipeline.models.tadtr.losses import actionness_loss, layer_losses, match_layer, match_layers
from tal_pipeline.models.tadtr.matcher import cw_to_bounds
from tal_pipeline.models.tadtr.roi_align import roi_align_1d
from tal_pipeline.models.tadtr.transformer import Encoder


class TadTR(nn.Module):
    """Set-prediction detector: N queries -> N (class scores, segment, actionness); no anchors, no NMS.

    Every keyword argument is a JSON value (checkpoints record them and rebuild the model from them). The
    reference's THUMOS14 configuration is 4 encoder and 4 decoder layers, 40 queries, 8 heads, 4 sampling points,
    width 256, feed-forward 1024, dropout 0.1, 16 RoIAlign bins over the segment widened 1.5 x, matching costs
    6 / 5 / 2 and loss weights 2 / 5 / 2 / 4 (class / L1 / tIoU / actionness). Here the width is 128 (feed-forward
    4 x width = 512; docs/method.md §8 says why).
    nms_sigma None: no NMS (the set prediction is one detection per query), the top max_dets (query, class)
    pairs by score; a number: Gaussian Soft-NMS with that sigma (models/nms.py).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 128, heads: int = 8, enc_layers: int = 4,
                 dec_layers: int = 4, queries: int = 40, enc_points: int = 4, dec_points: int = 4,
                 mlp_ratio: int = 4, dropout: float = 0.1, roi_bins: int = 16, roi_samples: int = 2,
                 roi_scale: float = 1.5, cost_class: float = 6.0, cost_seg: float = 5.0, cost_iou: float = 2.0,
                 cls_weight: float = 2.0, seg_weight: float = 5.0, iou_weight: float = 2.0, act_weight: float = 4.0,
                 aux_loss: bool = True, focal_alpha: float = 0.25, focal_gamma: float = 2.0, cls_prior: float = 0.01,
                 score_thresh: float = 1e-3, max_dets: int = 200, nms_sigma: float | None = None,
                 pre_nms_topk: int = 2000):
        super().__init__()
        self.num_classes, self.width = num_classes, width
        self.costs = (float(cost_class), float(cost_seg), float(cost_iou))
        self.weights = {"cls": float(cls_weight), "l1": float(seg_weight), "iou": float(iou_weight)}
        self.act_weight, self.aux_loss = float(act_weight), bool(aux_loss)
        self.focal_alpha, self.focal_gamma = float(focal_alpha), float(focal_gamma)
        self.roi_bins, self.roi_samples, self.roi_scale = int(roi_bins), int(roi_samples), float(roi_scale)
        self.score_thresh, self.max_dets, self.nms_sigma = score_thresh, max_dets, nms_sigma
        self.pre_nms_topk = pre_nms_topk  # read by models.nms.select_batch_detections when Soft-NMS is on
        hidden = mlp_ratio * width
        self.input_proj = InputProjection(in_channels, width)
        self.encoder = Encoder(enc_layers, width, heads, enc_points, hidden, dropout)
        self.decoder = Decoder(num_classes, dec_layers, queries, width, heads, dec_points, hidden, dropout, cls_prior)
        # Actionness g_q = sigmoid(MLP(RoIAlign(memory, widened segment_q))): the predicted segment's tIoU.
        self.actionness_head = MLP(roi_bins * width, width, 1, 3)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> dict:
        # features (B, C, T) float; mask (B, T) bool, True on real steps (a prefix of each row, as collate pads)
        valid = mask.bool()
        lengths = valid.sum(1).clamp(min=1).to(features.dtype)  # (B,) real steps L
        x = self.input_proj(features, valid).transpose(1, 2)  # (B, T, D)
        pos = sine_position(valid, self.width).to(x.dtype)  # (B, T, D)
        memory = self.encoder(x, pos, valid, lengths)  # (B, T, D)
        logits, segments, _ = self.decoder(memory, valid, lengths)  # (L, B, N, C), (L, B, N, 2)
        return {"logits": logits, "segments": segments, "lengths": lengths,
                "actionness": self._actionness(memory, segments[-1], lengths)}  # (B, N)

    def _actionness(self, memory: torch.Tensor, segments: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """memory (B, T, D), final segments (B, N, 2) normalised -> actionness (B, N) in (0, 1)."""
        widened = torch.stack([segments[..., 0], segments[..., 1] * self.roi_scale], -1).detach()  # (B, N, 2)
        span = self._to_steps(widened, lengths)  # (B, N, 2) in steps; RoIAlign clamps it to the real steps
        rois = roi_align_1d(memory.transpose(1, 2), span, lengths, self.roi_bins, self.roi_samples)  # (B, N, D, bins)
        return torch.sigmoid(self.actionness_head(rois.flatten(2)))[..., 0]  # (B, N)

    @staticmethod
    def _to_steps(segments: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) (centre, width) normalised -> (B, N, 2) (start, end) in input steps."""
        return cw_to_bounds(segments) * lengths[:, None, None] - 0.5

    @staticmethod
    def _normalise(targets: list[dict], lengths: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """targets[b]["segments"] (M, 2) [start, end] in steps -> ((M, 2) (centre, width) normalised, labels)."""
        out = []
        for b, tgt in enumerate(targets):
            seg = tgt["segments"].to(lengths.device, lengths.dtype).reshape(-1, 2)
            centre = (0.5 * (seg[:, 0] + seg[:, 1]) + 0.5) / lengths[b]
            out.append((torch.stack([centre, (seg[:, 1] - seg[:, 0]) / lengths[b]], 1),
                        tgt["labels"].to(lengths.device).long().reshape(-1)))
        return out

    def loss(self, outputs: dict, targets: list[dict]) -> dict:
        """targets[b] = {"segments": (M, 2) float in input steps, "labels": (M,) long, 0-based}.

        total = sum over the decoder layers (only the last one without aux_loss) of the weighted class, L1 and
        tIoU losses on that layer's matching, + act_weight * actionness loss (models/tadtr/losses.py).
        """
        tgts = self._normalise(targets, outputs["lengths"])
        logits, segments = outputs["logits"], outputs["segments"]  # (L, B, N, C), (L, B, N, 2)
        layers = range(logits.shape[0]) if self.aux_loss else [logits.shape[0] - 1]
        parts: dict[str, torch.Tensor] = {}
        aux = logits.new_zeros(())
        every = match_layers(logits[list(layers)], segments[list(layers)], tgts, self.costs, self.focal_alpha,
                             self.focal_gamma)  # one host copy of every layer's costs
        for layer, matches in zip(layers, every):
            terms = layer_losses(logits[layer], segments[layer], tgts, matches, self.focal_alpha, self.focal_gamma)
            weighted = sum(self.weights[k] * v for k, v in terms.items())
            if layer == logits.shape[0] - 1:
                parts = terms
                last = weighted
            else:
                aux = aux + weighted
        act = actionness_loss(outputs["actionness"], segments[-1].detach(), tgts)
        total = last + aux + self.act_weight * act
        return {"total": total, "cls": parts["cls"], "l1": parts["l1"], "iou": parts["iou"], "actionness": act,
                "aux": aux.detach()}

    @torch.no_grad()
    def regression_health(self, outputs: dict, targets: list[dict], min_width: float = 1e-3) -> dict:
        """Is the segment branch alive? A set-prediction detector has no dense foreground locations: its units are
        the queries the Hungarian matching assigns to the ground truth (of the last decoder layer). fg_locations:
        matched queries; positive_share: share of them whose predicted segment is wider than min_width steps and
        overlaps its ground truth (tIoU > 0) (NaN when there is none)."""
        lengths = outputs["lengths"]
        tgts = self._normalise(targets, lengths)
        logits, segments = outputs["logits"][-1], outputs["segments"][-1]  # (B, N, C), (B, N, 2)
        matches = match_layer(logits, segments, tgts, self.costs, self.focal_alpha, self.focal_gamma)
        total, alive = 0, 0
        for b, ((seg, _), (qi, ti)) in enumerate(zip(tgts, matches)):
            pred = self._to_steps(segments[b, qi][None], lengths[b:b + 1])[0]  # (K, 2) steps
            gt = self._to_steps(seg[ti][None], lengths[b:b + 1])[0]
            ok = (pred[:, 1] - pred[:, 0] > min_width) & (tiou(pred[:, 0], pred[:, 1], gt[:, 0], gt[:, 1],
                                                                 min_union=1e-6) > 0)
            total += int(qi.numel())
            alive += int(ok.sum())
        return {"fg_locations": total, "positive_share": alive / total if total else float("nan"),
                "criterion": "matched queries whose predicted segment has positive width and overlaps its ground "
                             "truth"}

    @torch.no_grad()
    def predict(self, outputs: dict, score_thresh: float | None = None, max_dets: int | None = None,
                nms_sigma: float | None = None, voting_thresh: float = 0.0
                ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per video: (segments (N, 2) in input steps, scores (N,), labels (N,) 0-based), best first, on the CPU.

        score = sigmoid(class logit) x actionness (TadTR's inference score); every (query, class) pair is a
        candidate (multi-label, as the reference's post-processing).
        """
        scores = torch.sigmoid(outputs["logits"][-1]) * outputs["actionness"][..., None]  # (B, N, C)
        segs = self._to_steps(outputs["segments"][-1], outputs["lengths"])  # (B, N, 2)
        sigma = self.nms_sigma if nms_sigma is None else nms_sigma
        if sigma is not None:
            valid = torch.ones(segs.shape[:2], dtype=torch.bool, device=segs.device)
            return select_batch_detections(segs, scores, valid, self, score_thresh, max_dets, sigma,
                                           voting_thresh)
        thresh = self.score_thresh if score_thresh is None else score_thresh
        cap = self.max_dets if max_dets is None else max_dets
        out = []
        for b in range(segs.shape[0]):
            s = scores[b].flatten().float().cpu()  # (N*C,)
            keep = torch.nonzero(s > thresh).flatten()
            keep = keep[torch.argsort(s[keep], descending=True, stable=True)][:cap]
            query, label = keep // self.num_classes, keep % self.num_classes
            out.append((segs[b].float().cpu()[query], s[keep], label))
        return out
