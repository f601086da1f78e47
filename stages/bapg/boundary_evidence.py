"""Boundary evidence from a similarity matrix S (T x T), as continuous per-step curves a detector can weigh.

Step t stands for the boundary between steps t-1 and t (the change-point convention of stages/bapg/tsc.py:
a change point c is the first step of a new segment).

1. Novelty (a checkerboard-kernel novelty, Foote 2000, with block means): for a width k,

       novelty_k(t) = mean S[P, P] + mean S[F, F] - 2 mean S[P, F],   P = [t-k, t),  F = [t, t+k)

   i.e. the biased MMD^2 (Gretton et al. 2012) between the k steps before and the k steps after t under the
   kernel S. mean S[P, F] is taken over (S + S^T) / 2, so a slightly asymmetric S (float16 rounding) counts
   both orientations. At the video's ends the windows are truncated to the available part,
   P = [max(0, t-k), t), F = [t, min(T, t+k)), each mean taken over the steps it has; novelty(0) = 0 (no
   past: the video start is not a boundary). The within-window means include the diagonal (S[i, i] = 1 for
   a cosine S), so in the first and last k-1 steps, where a window is shorter, the curve sits higher by up to
   (1 - mean off-diagonal similarity) / window length: a fixed, position-only lift a detector can discount.
   S is read in square tiles along the diagonal; each tile's 2-D prefix sums give every block sum in O(1):
   O(T * (block_rows + 4 max k)) reads and O((block_rows + 2 max k)^2) float64 memory, never a copy of S.

2. Change-point strength: how much the TSC cost (BAPG eq. 4, tests/reference_tsc.segment_cost,
   v(a, b) = sum_{i in [a, b)} S[i, i] - (1 / (b - a)) sum_{i, j in [a, b)} S[i, j]) rises when change point
   c_i is removed and its neighbouring segments L = [b_{i-1}, c_i), R = [c_i, b_{i+1}) merge:

       rise_i = v(L u R) - v(L) - v(R) = Q_L / n_L + Q_R / n_R - (Q_L + Q_R + X_LR) / (n_L + n_R)
              = (n_L n_R / (n_L + n_R)) * (mean S[L, L] + mean S[R, R] - 2 mean S[L, R])

   with Q the block sums, X_LR = sum S[L, R] + sum S[R, L]; the traces cancel. It is >= 0 for a positive
   semi-definite S (a cosine S up to float16 rounding). normalise=True returns the bracket alone, the MMD^2
   between the two whole segments: length-free, in [0, 4] for a cosine S (the novelty with windows = the
   segments). As a per-step curve the value sits at the change point's step c_i and is 0 elsewhere
   (no spreading: a detector's convolutions do that, and the curve stays exact).
"""
from __future__ import annotations

import numpy as np

DEFAULT_WIDTHS = (2, 4, 8)
DEFAULT_BLOCK_ROWS = 512


def _num_steps(similarity, where: str) -> int:
    shape = getattr(similarity, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != shape[1] or shape[0] == 0:
        raise ValueError(f"{where}: similarity matrix must be 2-D square (T, T) with T > 0, got shape {shape}")
    return int(shape[0])


def _check_change_points(change_points, T: int, where: str) -> np.ndarray:
    c = np.asarray(change_points).reshape(-1).astype(np.int64)  # (m,)
    if c.size and (c[0] <= 0 or c[-1] >= T or np.any(np.diff(c) <= 0)):
        raise ValueError(f"{where}: change points must be ascending in (0, {T}), got {c.tolist()[:10]}")
    return c


def novelty_curves(similarity, widths=DEFAULT_WIDTHS, block_rows: int = DEFAULT_BLOCK_ROWS,
                   name: str = "similarity") -> np.ndarray:
    """Checkerboard novelty of S at each width k (module docstring): (T, len(widths)) float32.

    similarity: (T, T) array-like (numpy, memmap, zarr; any float dtype), read in diagonal tiles of
    block_rows + 2 max(widths) steps. Column w is width widths[w]; row 0 is 0.
    """
    T = _num_steps(similarity, name)
    widths = [int(k) for k in (widths if np.ndim(widths) else [widths])]
    if not widths or min(widths) < 1 or int(block_rows) < 1:
        raise ValueError(f"{name}: widths must be >= 1 and block_rows >= 1, got {widths}, {block_rows}")
    K = max(widths)
    out = np.zeros((T, len(widths)), dtype=np.float32)  # (T, W)
    for t0 in range(1, T, int(block_rows)):
        t1 = min(T, t0 + int(block_rows))
        lo, hi = max(0, t0 - K), min(T, t1 + K)  # the tile covers every window of t in [t0, t1)
        tile = np.asarray(similarity[lo:hi, lo:hi], dtype=np.float64)  # (n, n)
        if not np.isfinite(tile).all():
            i, j = np.argwhere(~np.isfinite(tile))[0]
            raise ValueError(f"{name}: similarity matrix has a non-finite value at [{lo + i}, {lo + j}]")
        P = np.zeros((hi - lo + 1, hi - lo + 1))  # (n+1, n+1): P[r, c] = sum tile[:r, :c]
        np.cumsum(np.cumsum(tile, axis=0), axis=1, out=P[1:, 1:])

        def box(r0, r1, c0, c1):  # sum tile[r0:r1, c0:c1] per t, from the 2-D prefix sums
            return P[r1, c1] - P[r0, c1] - P[r1, c0] + P[r0, c0]

        t = np.arange(t0, t1)  # (nt,)
        m = t - lo  # (nt,) the boundary in tile coordinates
        for w, k in enumerate(widths):
            a, b = np.maximum(t - k, 0) - lo, np.minimum(t + k, T) - lo  # (nt,) window edges, truncated
            n_past, n_next = m - a, b - m  # (nt,) both >= 1 for 0 < t < T
            within = box(a, m, a, m) / n_past ** 2 + box(m, b, m, b) / n_next ** 2
            cross = (box(a, m, m, b) + box(m, b, a, m)) / (n_past * n_next)  # 2 mean of (S + S^T)/2
            out[t0:t1, w] = within - cross
    return out


def _segment_sums(similarity, bounds: np.ndarray, block_rows: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Block sums of the segments [bounds[s], bounds[s+1]): Q (K,) = sum S[s, s], X (K-1,) = sum S[s, s+1] +
    sum S[s+1, s], both float64; each row block reads only the columns of its segments and their neighbours."""
    K = len(bounds) - 1
    T = int(bounds[-1])
    seg_of = np.repeat(np.arange(K), np.diff(bounds))  # (T,) segment of each step
    Q, X = np.zeros(K), np.zeros(max(K - 1, 0))
    for r0 in range(0, T, block_rows):
        r1 = min(T, r0 + block_rows)
        s = seg_of[r0:r1]  # (nb,)
        j0, j1 = max(int(s[0]) - 1, 0), min(int(s[-1]) + 2, K)  # column segments j0 .. j1-1
        rows = np.asarray(similarity[r0:r1, bounds[j0]:bounds[j1]])  # (nb, ncols)
        if not np.isfinite(rows).all():
            i, j = np.argwhere(~np.isfinite(rows))[0]
            raise ValueError(f"{name}: similarity matrix has a non-finite value at [{r0 + i}, {bounds[j0] + j}]")
        rs = np.add.reduceat(rows, bounds[j0:j1] - bounds[j0], axis=1, dtype=np.float64)  # (nb, j1-j0)
        idx = np.arange(r1 - r0)
        Q += np.bincount(s, weights=rs[idx, s - j0], minlength=K)
        nxt, prv = s < K - 1, s > 0  # rows with a next / previous segment
        X += np.bincount(s[nxt], weights=rs[idx[nxt], s[nxt] + 1 - j0], minlength=K - 1)
        X += np.bincount(s[prv] - 1, weights=rs[idx[prv], s[prv] - 1 - j0], minlength=K - 1)
    return Q, X


def change_point_strength(similarity, change_points, normalise: bool = False, block_rows: int = 256,
                          name: str = "similarity") -> np.ndarray:
    """Rise of the TSC cost when each change point is removed (module docstring): (m,) float64.

    change_points: (m,) ascending in (0, T), e.g. one scale of tsc.change_points. normalise=True: divided by
    n_L n_R / (n_L + n_R), the MMD^2 between the two neighbouring segments. S is read in row blocks, each only
    over the columns of its rows' segments and their neighbours.
    """
    T = _num_steps(similarity, name)
    c = _check_change_points(change_points, T, name)
    if c.size == 0:
        return np.zeros(0)
    bounds = np.concatenate([[0], c, [T]]).astype(np.int64)  # (m+2,)
    Q, X = _segment_sums(similarity, bounds, int(block_rows), name)  # (m+1,), (m,)
    n = np.diff(bounds).astype(np.float64)  # (m+1,) segment lengths
    nL, nR = n[:-1], n[1:]  # (m,)
    rise = Q[:-1] / nL + Q[1:] / nR - (Q[:-1] + Q[1:] + X) / (nL + nR)
    return rise / (nL * nR / (nL + nR)) if normalise else rise


def strength_curve(change_points, strengths, num_steps: int) -> np.ndarray:
    """(T,) float32: strengths[i] at step change_points[i], 0 elsewhere."""
    c = _check_change_points(change_points, int(num_steps), "strength_curve")
    v = np.asarray(strengths, dtype=np.float64).reshape(-1)
    if v.shape != c.shape:
        raise ValueError(f"{len(c)} change points but {len(v)} strengths")
    out = np.zeros(int(num_steps), dtype=np.float32)
    out[c] = v
    return out


def strength_curves(similarity, scales, normalise: bool = True, block_rows: int = 256,
                    name: str = "similarity") -> np.ndarray:
    """(T, len(scales)) float32: the strength curve of each scale's change points (scales: list of (m,)).

    normalise defaults to True here: the raw rise grows with segment length (steps), the MMD^2 does not, which
    suits a detector's input channel.
    """
    T = _num_steps(similarity, name)
    out = np.zeros((T, len(scales)), dtype=np.float32)
    for j, cps in enumerate(scales):
        out[:, j] = strength_curve(cps, change_point_strength(similarity, cps, normalise, block_rows, name), T)
    return out
