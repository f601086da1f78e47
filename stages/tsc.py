"""Temporal Similarity Clustering (BAPG II-C): exact kernel change-point detection on a similarity matrix.

Segment cost of the feature steps [a, b) (BAPG eq. 4; Harchaoui & Cappe kernel change points):

    v(a, b) = sum_{i=a}^{b-1} S[i, i] - (1 / (b - a)) * sum_{i, j in [a, b)} S[i, j]

For m change points the dynamic programme (BAPG eq. 5)

    F[k][b] = min_{a} F[k-1][a] + v(a, b),   F[1][b] = v(0, b)

gives the least total cost of k = m + 1 segments of [0, T). One pass up to k = max(m) + 1 yields the
optimum for every requested m.

Memory stays O(m_max * T): S is read once, in row blocks, and the DP runs over the segment end b in
increasing order, so only the running block sums Q[a] = sum_{i, j in [a, b)} S[i, j] (one float64 vector)
are kept, never a T x T prefix sum. The block sum uses (S + S^T) / 2, which has the same block sums as S,
so a slightly asymmetric S (float16 rounding) is handled exactly as the formula says.

Ties: every argmin takes the smallest segment start a, and the backtracking runs from the end, so among
equally good segmentations the last change point is the earliest possible, then the one before it, and so
on (the same rule as ruptures' KernelCPD). Exact ties need exactly equal float64 costs.
"""
from __future__ import annotations

import warnings

import numpy as np

import stages  # noqa: F401  (sets NUMBA_CACHE_DIR before numba compiles anything)
from llvmlite import ir as lir
from numba import njit, types
from numba.extending import intrinsic

DEFAULT_MS = (10, 15, 20)
DEFAULT_BLOCK_ROWS = 256
# Min-reduction chunk: the min of each chunk is a vectorised reduction; the argmin is then looked for only
# inside the first chunk that held the minimum.
_CHUNK = 128
# Only 'nnan'/'nsz' (they let LLVM vectorise the min reduction): no 'ninf' (infeasible DP states are +inf),
# no 'arcp'/'contract' (they would change the rounding of the costs). S is checked finite in _dp_block,
# which has no fast-math flags, before any value reaches the fast-math kernel.
_FAST = {"nnan", "nsz"}


@intrinsic
def _fmin(typingctx, a, b):
    """llvm.minnum.f64: numba's min() is a compare+select that LLVM does not vectorise as a reduction."""
    sig = types.float64(types.float64, types.float64)

    def codegen(context, builder, signature, args):
        fnty = lir.FunctionType(lir.DoubleType(), [lir.DoubleType(), lir.DoubleType()])
        fn = builder.module.declare_intrinsic("llvm.minnum", [lir.DoubleType()], fnty)
        return builder.call(fn, args, fastmath=("nnan", "nsz"))

    return sig, codegen


@njit(cache=True, nogil=True, fastmath=_FAST)
def _min_and_argmin(prev, cost, lo, hi):
    """min over a in [lo, hi] of prev[a] + cost[a], and the smallest a reaching it."""
    best = np.inf
    best_chunk = lo
    for c in range((hi - lo) // _CHUNK + 1):
        a0 = lo + c * _CHUNK
        p = prev[a0:min(a0 + _CHUNK, hi + 1)]  # (<= _CHUNK,) zero-based views: LLVM vectorises this loop,
        q = cost[a0:min(a0 + _CHUNK, hi + 1)]  # not one indexed from a0 (8x slower, measured)
        cmin = np.inf
        for a in range(p.shape[0]):
            cmin = _fmin(cmin, p[a] + q[a])
        if cmin < best:  # strict: the earliest chunk holding the minimum wins
            best = cmin
            best_chunk = a0
    arg = best_chunk
    for a in range(best_chunk, min(best_chunk + _CHUNK, hi + 1)):
        if prev[a] + cost[a] == best:
            arg = a
            break
    return best, arg


@njit(cache=True, nogil=True)
def _dp_block(lower, upper_t, r0, diag_cum, qsum, cost, F, arg, min_size):
    """Advance the DP over segment ends b = r0+1 .. r0+nb using rows r0 .. r0+nb-1 of S.

    lower:   (nb, r0+nb) S[r0:r0+nb, 0:r0+nb]   (the block's rows, up to the block diagonal)
    upper_t: (nb, r0)    S[0:r0, r0:r0+nb].T    (the block's columns above it, transposed)
    diag_cum:(T+1,) cumulative sum of diag(S); qsum: (T+1,) block sums Q[a] = sum S[a:b, a:b] for the current b
    cost:    (T+1,) scratch for v(., b); F: (K+1, T+1) DP values; arg: (K+1, T+1) int32 argmins
    Returns -1, or the first row r whose row or column of S holds a NaN/inf (nothing after it is computed).
    """
    nb = lower.shape[0]
    kmax = F.shape[0] - 1
    for i in range(nb):
        r = r0 + i  # row r of S joins: segment end b = r + 1
        b = r + 1
        d = np.float64(lower[i, r])
        diag_cum[b] = diag_cum[r] + d
        # Q(a, b) = Q(a, b-1) + S[r, r] + sum_{j=a}^{r-1} (S[r, j] + S[j, r])   (the block grows by a row+col)
        qsum[r] = d
        run = 0.0
        for a in range(r - 1, r0 - 1, -1):  # S[j, r] of this block's rows
            run += np.float64(lower[i, a]) + np.float64(lower[a - r0, r])
            qsum[a] += d + run
        for a in range(r0 - 1, -1, -1):  # S[j, r] of the rows above the block
            run += np.float64(lower[i, a]) + np.float64(upper_t[i, a])
            qsum[a] += d + run
        if not np.isfinite(run + d):  # a NaN/inf anywhere in row r or column r propagates to here
            return r
        # v(a, b) = (sum of the diagonal over [a, b)) - Q(a, b) / (b - a)      (BAPG eq. 4)
        for a in range(b):
            cost[a] = (diag_cum[b] - diag_cum[a]) - qsum[a] / (b - a)
        # one segment
        if b >= min_size:
            F[1, b] = cost[0]
            arg[1, b] = 0
        # k segments: the last one is [a, b) with a in [(k-1)*min_size, b-min_size]      (BAPG eq. 5)
        hi = b - min_size
        for k in range(2, kmax + 1):
            lo = (k - 1) * min_size
            if lo > hi:
                break
            best, am = _min_and_argmin(F[k - 1], cost, lo, hi)
            F[k, b] = best
            arg[k, b] = am
    return -1


def _read(similarity, rows: slice, cols: slice) -> np.ndarray:
    """S[rows, cols] as a float32/float64 numpy block (float16 widened: numba has no float16 arithmetic)."""
    block = np.asarray(similarity[rows, cols])
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float32 if block.dtype == np.float16 else np.float64)
    return block


def _locate_non_finite(similarity, r: int, where: str):
    row = np.asarray(similarity[r, :], dtype=np.float64)
    col = np.asarray(similarity[:, r], dtype=np.float64)
    if not np.isfinite(row).all():
        j = int(np.flatnonzero(~np.isfinite(row))[0])
        i, value = r, row[j]
    elif not np.isfinite(col).all():
        i = int(np.flatnonzero(~np.isfinite(col))[0])
        j, value = r, col[i]
    else:  # finite values whose sum overflows
        raise ValueError(f"{where}: similarity matrix values overflow float64 in row/column {r}")
    raise ValueError(f"{where}: similarity matrix has a non-finite value ({value}) at [{i}, {j}]")


def _check_square(similarity, where: str) -> int:
    shape = getattr(similarity, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{where}: similarity matrix must be 2-D square (T, T), got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{where}: similarity matrix is empty (T = 0)")
    return int(shape[0])


def _run_dp(similarity, kmax: int, min_size: int, block_rows: int, where: str):
    """Forward DP up to kmax segments. Returns F (kmax+1, T+1) float64, arg (kmax+1, T+1) int32."""
    T = _check_square(similarity, where)
    diag_cum = np.zeros(T + 1)  # (T+1,)
    qsum = np.zeros(T + 1)  # (T+1,)
    cost = np.zeros(T + 1)  # (T+1,)
    F = np.full((kmax + 1, T + 1), np.inf)  # (K+1, T+1)
    arg = np.full((kmax + 1, T + 1), -1, dtype=np.int32)  # (K+1, T+1)
    for r0 in range(0, T, block_rows):
        r1 = min(T, r0 + block_rows)
        lower = _read(similarity, slice(r0, r1), slice(0, r1))  # (nb, r1)
        upper_t = np.ascontiguousarray(_read(similarity, slice(0, r0), slice(r0, r1)).T)  # (nb, r0)
        if upper_t.dtype != lower.dtype:
            upper_t = upper_t.astype(lower.dtype)
        bad = _dp_block(lower, upper_t, r0, diag_cum, qsum, cost, F, arg, min_size)
        if bad >= 0:
            _locate_non_finite(similarity, bad, where)
    return F, arg


def _backtrack(arg: np.ndarray, k: int, T: int) -> np.ndarray:
    """Segment starts of the optimal k-segmentation of [0, T), without 0: (k-1,) int64 ascending."""
    cps = np.empty(k - 1, dtype=np.int64)
    b = T
    for kk in range(k, 1, -1):
        a = int(arg[kk, b])
        cps[kk - 2] = a
        b = a
    return cps


def change_points(similarity, ms=DEFAULT_MS, min_size: int = 1, block_rows: int = DEFAULT_BLOCK_ROWS,
                  name: str = "similarity") -> dict[int, np.ndarray]:
    """Optimal change points of S for every m in `ms` from one DP pass.

    similarity: (T, T) array-like (numpy, memmap, zarr or h5py array; any float dtype), read in blocks of
        `block_rows` rows. `name` (e.g. the video id or file) is used in error messages.
    ms: numbers of change points m >= 0 (m + 1 segments).
    min_size: minimum segment length in feature steps (>= 1).
    Returns {m: (m,) int64}: the indices t (0 < t < T, ascending) at which a new segment starts, i.e. ruptures'
    breakpoints without the final T. When m + 1 segments of length >= min_size do not fit in T steps, the
    largest feasible number of change points is returned for that m, with a warning.
    """
    ms = [int(m) for m in (ms if np.ndim(ms) else [ms])]
    if not ms or min(ms) < 0:
        raise ValueError(f"{name}: numbers of change points must be >= 0, got {ms}")
    if int(min_size) < 1:
        raise ValueError(f"{name}: min_size must be >= 1, got {min_size}")
    min_size = int(min_size)
    T = _check_square(similarity, name)
    max_segments = max(1, T // min_size)
    kmax = min(max(ms) + 1, max_segments)
    F, arg = _run_dp(similarity, kmax, min_size, int(block_rows), name)
    out = {}
    for m in ms:
        k = m + 1
        if k > max_segments:
            warnings.warn(f"{name}: {m} change points do not fit in T = {T} steps with min_size = {min_size}; "
                          f"returning {max_segments - 1}", RuntimeWarning, stacklevel=2)
            k = max_segments
        out[m] = _backtrack(arg, k, T)
    return out


def segment_cost(similarity, a: int, b: int) -> float:
    """v(a, b) of BAPG eq. 4 computed directly from S (for tests and checks): 0 <= a < b <= T."""
    S = np.asarray(similarity[a:b, a:b], dtype=np.float64)
    if not 0 <= a < b <= similarity.shape[0]:
        raise ValueError(f"segment [{a}, {b}) is outside [0, {similarity.shape[0]}]")
    return float(np.trace(S) - S.sum() / (b - a))


def segmentation_cost(similarity, cps, T: int | None = None) -> float:
    """Total cost of the segmentation with change points `cps` (sum of v over its segments)."""
    T = similarity.shape[0] if T is None else T
    bounds = [0, *[int(c) for c in cps], T]
    return float(sum(segment_cost(similarity, a, b) for a, b in zip(bounds[:-1], bounds[1:])))


def cosine_similarity(x: np.ndarray) -> np.ndarray:
    """S = cosine similarity of the rows of x: (T, D) -> (T, T) float64 (zero rows give 0 similarity)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)  # (T, 1)
    xn = x / np.where(norm > 0, norm, 1.0)
    return xn @ xn.T
