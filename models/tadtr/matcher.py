"""Bipartite matching of TadTR's predictions to the ground truth of one video (DETR's Hungarian matching, with
TadTR's cost): the one-to-one assignment sigma minimising sum_i C(y_i, yhat_sigma(i)), where

    C(y_i, yhat_j) = cost_class * focal_cost_j(c_i) + cost_seg * ||s_i - shat_j||_1 - cost_iou * tIoU(s_i, shat_j)

s = (centre, width), normalised; focal_cost_j(c) = alpha (1 - p)^gamma (-log p) - (1 - alpha) p^gamma
(-log(1 - p)) with p = sigmoid(logit_j[c]): the focal loss of making p a positive minus that of leaving it a
negative. Solved exactly by scipy.optimize.linear_sum_assignment; unmatched queries are background.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from tal_pipeline.models.segments import pairwise_tiou


def cw_to_bounds(seg: torch.Tensor) -> torch.Tensor:
    """(..., 2) (centre, width) -> (..., 2) (start, end), same units."""
    c, w = seg[..., 0], seg[..., 1]
    return torch.stack([c - 0.5 * w, c + 0.5 * w], dim=-1)


def matching_cost(logits: torch.Tensor, segments: torch.Tensor, gt_segments: torch.Tensor, gt_labels: torch.Tensor,
                  cost_class: float, cost_seg: float, cost_iou: float, alpha: float = 0.25, gamma: float = 2.0
                  ) -> torch.Tensor:
    """logits (N, C), segments (N, 2), gt_segments (M, 2) (centre, width), gt_labels (M,) -> cost (N, M)."""
    p = torch.sigmoid(logits.float())[:, gt_labels]  # (N, M): each query's probability of each target's class
    pos = alpha * (1 - p) ** gamma * -(p + 1e-8).log()
    neg = (1 - alpha) * p ** gamma * -(1 - p + 1e-8).log()
    l1 = torch.cdist(segments.float(), gt_segments.float(), p=1)  # (N, M)
    iou = pairwise_tiou(cw_to_bounds(segments.float()), cw_to_bounds(gt_segments.float()), min_union=1e-6)  # (N, M)
    return cost_class * (pos - neg) + cost_seg * l1 - cost_iou * iou


@torch.no_grad()
def hungarian_match_many(costs: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """hungarian_match of every cost (N_i, M_i) in `costs` with one device-to-host copy of all of them and one copy
    of all the indices back (per-matrix copies are a device sync each: decoder layers x videos per step)."""
    if not costs:
        return []
    dev = costs[0].device
    flat = torch.cat([c.detach().reshape(-1).to(torch.float64) for c in costs]).cpu().numpy()  # the one copy out
    if not np.isfinite(flat).all():
        raise FloatingPointError("TadTR matching cost is not finite")
    rows, cols, offset = [], [], 0
    for cost in costs:
        n, m = cost.shape
        r, c = linear_sum_assignment(flat[offset:offset + n * m].reshape(n, m)) if n and m else ([], [])
        rows.append(np.asarray(r, dtype=np.int64))
        cols.append(np.asarray(c, dtype=np.int64))
        offset += n * m
    sizes = [len(r) for r in rows]
    both = torch.as_tensor(np.concatenate(rows + cols), device=dev)  # the one copy back: (2 * sum K,)
    queries, targets = both.split([sum(sizes), sum(sizes)])
    return list(zip(queries.split(sizes), targets.split(sizes)))


@torch.no_grad()
def hungarian_match(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cost (N, M) -> (query indices (K,), target indices (K,)) of the minimum-cost assignment, K = min(N, M),
    sorted by query; long tensors on the cost's device."""
    dev = cost.device
    if cost.shape[0] == 0 or cost.shape[1] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return empty, empty.clone()
    c = cost.detach().to(torch.float64).cpu().numpy()
    if not np.isfinite(c).all():
        raise FloatingPointError("TadTR matching cost is not finite")
    rows, cols = linear_sum_assignment(c)
    return (torch.as_tensor(rows, dtype=torch.long, device=dev), torch.as_tensor(cols, dtype=torch.long, device=dev))
