"""Boundary contrastive learning data (sec. 3.3): split an action, insert background, pool the pieces.

For a video whose shortest action lasts w_min steps, an action longer than 2*w_min is cut at a random
point into A1 | A2, and a random background clip Bg of w_min steps is put between them. The clip
A1 | Bg | A2 is then run through the frame-level branch and the pieces are boundary-pooled.
"""
from __future__ import annotations

import math

import torch


def _background_runs(segments: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Half-open step ranges [a, b) of [0, length) covered by no action range."""
    covered = torch.zeros(length, dtype=torch.bool)
    for a, b in segments:
        covered[max(a, 0):min(b, length)] = True
    runs, start = [], None
    for i, c in enumerate(covered.tolist() + [True]):
        if not c and start is None:
            start = i
        elif c and start is not None:
            runs.append((start, i))
            start = None
    return runs


def build_contrastive_clips(x: torch.Tensor, lengths: torch.Tensor, targets: list[dict]
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """x (B, C, T) input features; returns clips (N, C, L), clip lengths (N,), pieces (N, 3, 2) or None.

    pieces[n] = continuous spans [start, end] of A1, Bg, A2 inside clip n (step i is centred at i,
    so steps [p, q) span [p - 0.5, q - 0.5]). At most one clip per video; None when no video qualifies.
    """
    clips, pieces = [], []
    for b, tgt in enumerate(targets):
        segs = tgt["segments"].detach().cpu()
        n_valid = int(lengths[b])
        if segs.shape[0] == 0:
            continue
        # Steps whose centre lies inside the action: [ceil(s), floor(e)] -> half-open [a, b).
        ranges = [(max(math.ceil(float(s)), 0), min(math.floor(float(e)) + 1, n_valid)) for s, e in segs.tolist()]
        ranges = [(a, e) for a, e in ranges if e > a]
        if not ranges:
            continue
        w_min = min(e - a for a, e in ranges)
        long_ones = [(a, e) for a, e in ranges if e - a > 2 * w_min]
        bgs = [(a, e) for a, e in _background_runs(ranges, n_valid) if e - a >= w_min]
        if not long_ones or not bgs:
            continue
        a0, a1 = long_ones[int(torch.randint(len(long_ones), (1,)))]
        g0, g1 = bgs[int(torch.randint(len(bgs), (1,)))]
        cut = a0 + w_min + int(torch.randint(a1 - a0 - 2 * w_min + 1, (1,)))  # both fragments >= w_min steps
        gs = g0 + int(torch.randint(g1 - g0 - w_min + 1, (1,)))
        clip = torch.cat([x[b, :, a0:cut], x[b, :, gs:gs + w_min], x[b, :, cut:a1]], dim=1)  # (C, L)
        l1, lb = cut - a0, w_min
        clips.append(clip)
        pieces.append(torch.tensor([[0, l1], [l1, l1 + lb], [l1 + lb, clip.shape[1]]], dtype=x.dtype) - 0.5)
    if not clips:
        return None
    max_len = max(c.shape[1] for c in clips)
    out = x.new_zeros(len(clips), x.shape[1], max_len)  # (N, C, L)
    for i, c in enumerate(clips):
        out[i, :, :c.shape[1]] = c
    clip_lengths = torch.tensor([c.shape[1] for c in clips], device=x.device)
    return out, clip_lengths, torch.stack(pieces).to(x.device)
