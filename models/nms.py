"""Gaussian Soft-NMS (Bodla et al. 2017), per class, in plain torch (tIoU: models/segments.py).

Segments are (N, 2) float tensors [start, end] in any consistent unit (feature steps here).
Classes are handled in one pass: each class is shifted to its own disjoint stretch of the time
axis, so segments of different classes never overlap and never suppress each other.
Unlike the AFSD reference loop, the last remaining candidate is kept (it is a valid detection).
Segment voting (ActionFormer's ActivityNet post-processing, `voting_thresh` > 0): after Soft-NMS each kept
segment is replaced by the average of the candidates of its class that overlap it with tIoU >= voting_thresh,
weighted by candidate score x tIoU (itself included, at tIoU 1); scores are left as Soft-NMS made them.
"""
from __future__ import annotations

import numpy as np
import torch

from tal_pipeline.models.segments import pairwise_tiou, tiou


def soft_nms(segments: torch.Tensor, scores: torch.Tensor, sigma: float = 0.5, min_score: float = 1e-3,
             max_keep: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian Soft-NMS on one class: returns (kept indices (K,), their decayed scores (K,)), best first.

    Each step takes the highest remaining score, keeps it, and multiplies every other remaining score
    by exp(-tIoU^2 / sigma); candidates whose score falls below min_score are dropped.
    """
    if segments.ndim != 2 or segments.shape[-1] != 2 or scores.shape != segments.shape[:1]:
        raise ValueError(f"soft_nms expects segments (N, 2) and scores (N,), got {tuple(segments.shape)} "
                         f"and {tuple(scores.shape)}")
    # numpy inside the loop: one pick per step is inherently sequential and torch's per-op overhead dominates.
    segs = segments.detach().to(torch.float64).cpu().numpy()
    cur = scores.detach().to(torch.float64).cpu().numpy().copy()  # (N,) decayed scores
    alive = np.flatnonzero(cur >= min_score)  # (R,) indices still competing
    start, end = segs[:, 0], segs[:, 1]
    keep, kept_scores = [], []
    limit = segs.shape[0] if max_keep is None else max_keep
    while alive.size > 0 and len(keep) < limit:  # '> 0', not '> 1': the last candidate is kept too
        best_pos = int(np.argmax(cur[alive]))
        best = int(alive[best_pos])
        keep.append(best)
        kept_scores.append(cur[best])
        alive = np.delete(alive, best_pos)  # (R-1,)
        if alive.size == 0:
            break
        iou = tiou(start[alive], end[alive], start[best], end[best], min_union=1e-8)  # (R-1,)
        decayed = cur[alive] * np.exp(-(iou * iou) / sigma)
        cur[alive] = decayed
        alive = alive[decayed >= min_score]
    dev = scores.device
    return (torch.tensor(keep, dtype=torch.long, device=dev),
            torch.tensor(kept_scores, dtype=scores.dtype, device=dev))


def batched_soft_nms(segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, sigma: float = 0.5,
                     min_score: float = 1e-3, max_keep: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft-NMS independently per class (labels (N,) int): returns (segments (K,2), scores (K,), labels (K,)), best
    first.

    The same segment may appear once per class (multi-label detections are kept).
    """
    if segments.numel() == 0:
        return segments.reshape(0, 2), scores.reshape(0), labels.reshape(0)
    segs = segments.detach().to(torch.float64)
    # Shift each class to its own stretch of the axis: no cross-class overlap, one Soft-NMS pass.
    span = float(segs.max() - segs.min()) + 1.0
    shifted = segs + (labels.to(torch.float64) * 2.0 * span)[:, None]  # (N, 2)
    keep, new_scores = soft_nms(shifted, scores, sigma=sigma, min_score=min_score, max_keep=max_keep)
    keep = keep.to(segments.device)
    return segments[keep], new_scores.to(scores.device), labels[keep]


def segment_voting(kept: torch.Tensor, kept_labels: torch.Tensor, candidates: torch.Tensor, scores: torch.Tensor,
                   labels: torch.Tensor, thresh: float) -> torch.Tensor:
    """Kept segments (N, 2) refined by their candidates (M, 2) (scores (M,), labels (M,)): each becomes the average
    of the same-class candidates with tIoU >= thresh to it, weighted by score x tIoU; unchanged where none is."""
    if kept.numel() == 0 or candidates.numel() == 0:
        return kept
    k, c = kept.to(torch.float64), candidates.to(torch.float64)
    iou = torch.from_numpy(pairwise_tiou(k.numpy(), c.numpy(), min_union=1e-8))  # (N, M)
    same = kept_labels[:, None] == labels[None, :]
    weights = torch.where((iou >= thresh) & same, iou * scores.to(torch.float64)[None, :], torch.zeros_like(iou))
    total = weights.sum(1, keepdim=True)  # (N, 1)
    refined = torch.where(total > 0, (weights @ c) / total.clamp(min=1e-300), k)
    return refined.to(kept.dtype)


def select_detections(segs: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, thresh: float, topk: int,
                      sigma: float, cap: int, voting_thresh: float = 0.0, levels: torch.Tensor | None = None,
                      min_duration: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multi-label candidates (every class above thresh at every valid location), top-k, per-class Soft-NMS, cap,
    then segment voting among the candidates when voting_thresh > 0.

    segs (K, 2), or (K, C, 2) when every class has its own segment (TriDet), scores (K, C), valid (K,) ->
    segments (N, 2), scores (N,), labels (N,). levels (K,): a pyramid-level key per location (its stride): the
    top-k is then taken within each level (ActionFormer's and TriDet's references); None: over all locations.
    A candidate must be longer than min_duration steps (the references' duration_thresh; 0: end > start).
    """
    num_classes = scores.shape[1]
    per_class = segs if segs.ndim == 3 else segs[:, None, :].expand(-1, num_classes, -1)  # (K, C, 2)
    s = torch.where(valid[:, None], scores, torch.zeros_like(scores)).flatten()  # (K*C,)
    s = torch.where((per_class[..., 1] - per_class[..., 0] > min_duration).flatten(), s, torch.zeros_like(s))
    keep = torch.nonzero(s > thresh).flatten()
    if levels is not None:  # top-k per level, levels in their order
        level_of = levels.repeat_interleave(num_classes)[keep]  # (N,)
        keep = torch.cat([_top(keep[level_of == v], s, topk) for v in torch.unique(levels)])
    else:
        keep = _top(keep, s, topk)
    loc, cls = keep // num_classes, keep % num_classes
    cand, cand_scores, cand_labels = per_class[loc, cls].float().cpu(), s[keep].float().cpu(), cls.cpu()
    out_segs, out_scores, out_labels = batched_soft_nms(cand, cand_scores, cand_labels, sigma=sigma, min_score=thresh,
                                                        max_keep=cap)
    if voting_thresh > 0:
        out_segs = segment_voting(out_segs, out_labels, cand, cand_scores, cand_labels, voting_thresh)
    return out_segs, out_scores, out_labels


def _top(keep: torch.Tensor, s: torch.Tensor, topk: int) -> torch.Tensor:
    """The (at most) topk indices of `keep` with the highest s."""
    return keep[torch.topk(s[keep], topk).indices] if keep.numel() > topk else keep


def select_batch_detections(segs: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, model,
                            score_thresh: float | None = None, max_dets: int | None = None,
                            nms_sigma: float | None = None, voting_thresh: float = 0.0,
                            levels: torch.Tensor | None = None
                            ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """select_detections for every video of a batch: segs (B, K, 2) or (B, K, C, 2), scores (B, K, C), valid (B, K)
    -> one (segments, scores, labels) per video. A setting not given is the detector's own: model.score_thresh,
    .max_dets, .nms_sigma (and always its .pre_nms_topk, and .min_duration where it has one); voting_thresh 0: no
    segment voting; levels (K,): top-k per level (select_detections)."""
    thr = model.score_thresh if score_thresh is None else score_thresh
    cap = model.max_dets if max_dets is None else max_dets
    sigma = model.nms_sigma if nms_sigma is None else nms_sigma
    return [select_detections(segs[b], scores[b], valid[b], thr, model.pre_nms_topk, sigma, cap, voting_thresh,
                              levels, float(getattr(model, "min_duration", 0.0))) for b in range(segs.shape[0])]
