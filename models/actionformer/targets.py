"""ActionFormer label assignment: centre sampling and per-level regression ranges, one video at a time."""
from __future__ import annotations

import torch


def default_regression_ranges(levels: int) -> list[tuple[float, float]]:
    """Ranges of max(start, end) distance in input steps: [0,4], [4,8], ..., the last one open-ended."""
    ranges = [(0.0, 4.0)] + [(4.0 * 2 ** (i - 1), 4.0 * 2 ** i) for i in range(1, levels)]
    ranges[-1] = (ranges[-1][0], float("inf"))
    return ranges


def regression_ranges_for(levels: int, given=None) -> list[tuple[float, float]]:
    """The per-level ranges a detector uses: `given` ([[lo, hi or None], ...], one per level) or the defaults."""
    import math

    ranges = given or default_regression_ranges(levels)
    if len(ranges) != levels:
        raise ValueError(f"{len(ranges)} regression ranges given for {levels} pyramid levels")
    return [(float(a), math.inf if b is None else float(b)) for a, b in ranges]


def assign_targets(positions: torch.Tensor, strides: torch.Tensor, ranges: torch.Tensor, gt_segments: torch.Tensor,
                   gt_labels: torch.Tensor, num_classes: int, center_radius: float = 1.5
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets for every location of all levels.

    positions, strides (K,) in input steps; ranges (K, 2); gt_segments (M, 2); gt_labels (M,) 0-based.
    A location is positive for a ground truth when it lies strictly within center_radius*stride of the action's
    centre and strictly inside the action (centre sampling), and its larger distance to the boundaries falls in
    its level's regression range. The shortest such action wins; every candidate action within 1e-3 steps of
    that length adds its class (multi-label), the regression target being the first shortest one's. All as the
    reference (label_points_single_video of happyharrycn/actionformer_release; tests/test_actionformer_parity.py).
    Returns cls targets (K, C) float, regression targets (K, 2) in stride units, positive mask (K,).
    """
    k = positions.shape[0]
    cls_t = positions.new_zeros(k, num_classes)
    reg_t = positions.new_zeros(k, 2)
    if gt_segments.numel() == 0:
        return cls_t, reg_t, torch.zeros(k, dtype=torch.bool, device=positions.device)
    p = positions[:, None]  # (K, 1)
    s, e = gt_segments[None, :, 0], gt_segments[None, :, 1]  # (1, M)
    left, right = p - s, e - p  # (K, M) distances to start and end
    centre = 0.5 * (s + e)
    radius = center_radius * strides[:, None]  # (K, 1)
    in_centre = (p > torch.maximum(centre - radius, s)) & (p < torch.minimum(centre + radius, e))  # (K, M) strict
    max_dist = torch.maximum(left, right)
    in_range = (max_dist >= ranges[:, 0:1]) & (max_dist <= ranges[:, 1:2])  # (K, M)
    ok = in_centre & in_range
    length = (e - s).expand(k, -1)
    length = torch.where(ok, length, torch.full_like(length, float("inf")))
    best_len, best = length.min(dim=1)  # (K,)
    pos = torch.isfinite(best_len)
    # Multi-label: every candidate action as long as the chosen one (within 1e-3 steps) contributes its class.
    same = torch.isfinite(length) & (length <= best_len[:, None] + 1e-3)  # (K, M)
    onehot = torch.nn.functional.one_hot(gt_labels.long(), num_classes).to(positions.dtype)  # (M, C)
    cls_t = (same.to(positions.dtype) @ onehot).clamp(max=1.0)  # (K, C)
    idx = torch.arange(k, device=positions.device)
    reg_t = torch.stack([left[idx, best], right[idx, best]], dim=1) / strides[:, None]  # (K, 2)
    reg_t = torch.where(pos[:, None], reg_t, torch.zeros_like(reg_t))
    return cls_t * pos[:, None], reg_t, pos
