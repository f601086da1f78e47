"""TadTR's set-prediction losses, per decoder layer, on the Hungarian matching of that layer (models/tadtr/matcher):

    L = w_cls L_cls + w_L1 L_L1 + w_iou L_iou    (every decoder layer: the last one and the auxiliary ones)
      + w_act L_act                              (the last layer only)

L_cls: sigmoid focal loss over every query and class, a matched query's target its ground truth's class, every
other query background (all zeros); L_L1 = sum over matched pairs of |c - c*| + |w - w*|; L_iou = sum over
matched pairs of 1 - tIoU; the three divided by the batch's number of ground-truth segments (at least 1).
L_act: the actionness head regresses, for every query, the largest tIoU of its final segment with a ground truth
of its video (0 when there is none): mean |g_q - max_i tIoU(s_q, s_i)| over all queries.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tal_pipeline.models.actionformer.losses import sigmoid_focal_loss
from tal_pipeline.models.segments import pairwise_tiou, tiou
from tal_pipeline.models.tadtr.matcher import cw_to_bounds, hungarian_match_many, matching_cost

Targets = list[tuple[torch.Tensor, torch.Tensor]]  # per video: segments (M, 2) (centre, width), labels (M,)


def match_layer(logits: torch.Tensor, segments: torch.Tensor, targets: Targets, costs: tuple[float, float, float],
                alpha: float, gamma: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per video (query indices, target indices) of one layer's predictions: logits (B, N, C), segments (B, N, 2)."""
    return match_layers(logits[None], segments[None], targets, costs, alpha, gamma)[0]


def match_layers(logits: torch.Tensor, segments: torch.Tensor, targets: Targets, costs: tuple[float, float, float],
                 alpha: float, gamma: float) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """match_layer of every layer: logits (L, B, N, C), segments (L, B, N, 2) -> [layer][video] matches; every
    cost matrix goes to the host in one copy (models.tadtr.matcher.hungarian_match_many)."""
    cost = [matching_cost(logits[layer, b], segments[layer, b], seg, lab, *costs, alpha, gamma)
            for layer in range(logits.shape[0]) for b, (seg, lab) in enumerate(targets)]
    flat = hungarian_match_many(cost)
    return [flat[layer * len(targets):(layer + 1) * len(targets)] for layer in range(logits.shape[0])]


def layer_losses(logits: torch.Tensor, segments: torch.Tensor, targets: Targets,
                 matches: list[tuple[torch.Tensor, torch.Tensor]], alpha: float, gamma: float
                 ) -> dict[str, torch.Tensor]:
    """{"cls", "l1", "iou"} of one layer (unweighted, each divided by the number of ground truths)."""
    num_gt = max(sum(int(lab.numel()) for _, lab in targets), 1)
    cls_target = torch.zeros_like(logits)  # (B, N, C)
    pred, gt = [], []
    for b, ((seg, lab), (qi, ti)) in enumerate(zip(targets, matches)):
        cls_target[b, qi, lab[ti]] = 1.0
        pred.append(segments[b, qi])  # (K_b, 2)
        gt.append(seg[ti])
    pred, gt = torch.cat(pred), torch.cat(gt)  # (K, 2) matched pairs
    cls = sigmoid_focal_loss(logits, cls_target, alpha, gamma) / num_gt
    l1 = F.l1_loss(pred, gt, reduction="sum") / num_gt
    pb, gb = cw_to_bounds(pred), cw_to_bounds(gt)  # (K, 2) (start, end)
    iou = (1.0 - tiou(pb[:, 0], pb[:, 1], gb[:, 0], gb[:, 1], min_union=1e-6)).sum() / num_gt
    return {"cls": cls, "l1": l1, "iou": iou}


def actionness_targets(segments: torch.Tensor, targets: Targets) -> torch.Tensor:
    """segments (B, N, 2) (centre, width) -> (B, N): each query's best tIoU with its video's ground truth (0: none)."""
    out = segments.new_zeros(segments.shape[:2])
    for b, (seg, _) in enumerate(targets):
        if seg.numel():
            out[b] = pairwise_tiou(cw_to_bounds(segments[b]), cw_to_bounds(seg), min_union=1e-6).max(1).values
    return out.detach()


def actionness_loss(actionness: torch.Tensor, segments: torch.Tensor, targets: Targets) -> torch.Tensor:
    """mean over all queries of |g_q - best tIoU of the query's segment|: actionness (B, N), segments (B, N, 2)."""
    return F.l1_loss(actionness, actionness_targets(segments, targets))
