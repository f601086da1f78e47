"""Proposal scores (docs/method.md §4): each proposal's contrast with its surroundings in the similarity matrix
S, ranked by Gaussian Soft-NMS so that near-duplicates from the several scales do not crowd the top."""
from __future__ import annotations

import numpy as np
import pandas as pd


def proposal_contrast(similarity, start_steps, end_steps, block_rows: int = 256) -> np.ndarray:
    """Contrast of each proposal [a, b) with its surroundings in S: (N,) float64.

        score = mean S[a:b, a:b] - max(mean S[a:b, a-w:a], mean S[a:b, b:b+w]),   w = b - a (clipped to [0, T))

    A proposal that covers one coherent span (an action) and nothing of the unlike steps around it (its
    warm-up, cool-down or background) scores high. A side with no steps (the video's ends) is left out; with
    neither side, the score is the inside mean. S is read once in row blocks; each row's prefix sums give every
    rectangle sum in O(1), so the cost is T^2 plus the proposals' total length, with O(block_rows x T) memory.
    """
    a = np.asarray(start_steps, dtype=np.int64)
    b = np.asarray(end_steps, dtype=np.int64)
    T = int(similarity.shape[0])
    w = b - a
    lo, hi = np.maximum(a - w, 0), np.minimum(b + w, T)  # (N,) context edges
    inside, left, right = np.zeros(len(a)), np.zeros(len(a)), np.zeros(len(a))
    for r0 in range(0, T, block_rows):
        r1 = min(T, r0 + block_rows)
        rows = np.asarray(similarity[r0:r1, :], dtype=np.float64)  # (nb, T)
        P = np.zeros((r1 - r0, T + 1))
        np.cumsum(rows, axis=1, out=P[:, 1:])  # (nb, T+1) row prefix sums
        for n in np.flatnonzero((a < r1) & (b > r0)):
            i0, i1 = max(a[n], r0) - r0, min(b[n], r1) - r0  # the proposal's rows inside this block
            pa, pb = P[i0:i1, a[n]], P[i0:i1, b[n]]
            inside[n] += (pb - pa).sum()
            left[n] += (pa - P[i0:i1, lo[n]]).sum()
            right[n] += (P[i0:i1, hi[n]] - pb).sum()
    inside /= w * w
    wl, wr = (a - lo) * w, (hi - b) * w  # (N,) entries of each side block
    left = np.where(wl > 0, left / np.maximum(wl, 1), -np.inf)
    right = np.where(wr > 0, right / np.maximum(wr, 1), -np.inf)
    context = np.maximum(left, right)
    return np.where(np.isfinite(context), inside - context, inside)


def soft_nms_rank(segments: np.ndarray, scores: np.ndarray, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian Soft-NMS over proposals (models.nms.soft_nms): (order (N,), decayed scores (N,)), best first.

    Near-duplicates (the same span from several scales, unions that share segments) sink below distinct ones.
    Scores are shifted to be positive first, so the decay acts on every one and none is dropped.
    """
    import torch

    from tal_pipeline.models.nms import soft_nms

    score = np.asarray(scores, dtype=np.float64)
    score = score - score.min() + 1e-3 if score.size else score
    order, decayed = soft_nms(torch.as_tensor(np.asarray(segments, dtype=np.float64).reshape(-1, 2)),
                              torch.as_tensor(score), sigma=sigma, min_score=0.0)
    return order.numpy().astype(np.int64), decayed.numpy()


def score_proposals(table: pd.DataFrame, similarity, block_rows: int = 256, sigma: float = 1.0) -> pd.DataFrame:
    """The table ranked by proposal_contrast after Soft-NMS (sigma; 0: no Soft-NMS), its "score" column set to
    the (decayed) score (docs/method.md §4: the ranking and what it does to AR@100)."""
    contrast = proposal_contrast(similarity, table["start_step"].to_numpy(), table["end_step"].to_numpy(),
                                 block_rows)
    if sigma > 0:
        order, score = soft_nms_rank(table[["start_step", "end_step"]].to_numpy(), contrast, sigma)
    else:
        order = np.argsort(-contrast, kind="stable")
        score = contrast[order]
    scored = table.iloc[order].reset_index(drop=True)
    scored["score"] = score
    scored.attrs.update(table.attrs)
    return scored
