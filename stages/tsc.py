"""Temporal Similarity Clustering (BAPG II-C): exact kernel change-point detection on a similarity matrix.

Segment cost of the feature steps [a, b) (BAPG eq. 4; Harchaoui & Cappe kernel change points):

    v(a, b) = sum_{i=a}^{b-1} S[i, i] - (1 / (b - a)) * sum_{i, j in [a, b)} S[i, j]

For m change points the dynamic programme (BAPG eq. 5)

    F[k][b] = min_{a} F[k-1][a] + v(a, b),   F[1][b] = v(0, b)

gives the least total cost of k = m + 1 segments of [0, T). One pass up to k = max(m) + 1 yields the
optimum for every smaller m: `segment` runs it once and returns a `Segmentation` (costs and change points of
every count); `change_points` is the same for a list of counts. Counts chosen per video: `counts_from_rates`
(change points per minute of video) and `penalised_count` (the KTS model selection of Potapov et al. 2014).

Memory stays O(m_max * T): S is read once, in row blocks, and the DP runs over the segment end b in
increasing order, so only the running block sums Q[a] = sum_{i, j in [a, b)} S[i, j] (one float64 vector)
are kept, never a T x T prefix sum. The block sum uses (S + S^T) / 2, which has the same block sums as S,
so a slightly asymmetric S (float16 rounding) is handled exactly as the formula says.

Speed (O(m_max * T^2) DP cells, O(T^2) block-sum updates): the DP inner loop is min over a of
F[k-1][a] + v(a, b). v(., b) is shared by every k and F[k-1][.] by every b, so the rows of S join eight at a
time (eight segment ends b, `_join_rows`) and, for each group of four k, the segment starts a that are
final for all eight b (a <= b0 - min_size, b0 the first of them) go through one vectorised loop per four b
(`_mins_4x4`: 16 min-plus reductions, 8 loads for 16 additions and minima) over a chunk of F that the
second group of four b then reads from L1 cache: F is streamed from memory once per eight b, not once per b.
The argmin is looked for only in the first chunk that holds the minimum. The few starts a among the eight b
come after, one (k, b) at a time, in increasing order of b and k (F[k-1][a] for those a is ready by then).
The block sums keep one running sum per new row (four add chains at a time), then the rows join Q in
order in a loop vectorised along a. The arithmetic is that of the plain loops (same sums, in the same
order), so the costs and change points are the same, to the bit, as one b and one k at a time.

Ties: every argmin takes the smallest segment start a, and the backtracking runs from the end, so among
equally good segmentations the last change point is the earliest possible, then the one before it, and so
on (the same rule as ruptures' KernelCPD). Exact ties need exactly equal float64 costs.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

import pipeline.stages  # noqa: F401  (sets NUMBA_CACHE_DIR before numba compiles anything)
from llvmlite import ir as lir
from numba import njit, types
from numba.extending import intrinsic

DEFAULT_MS = (10, 15, 20)
DEFAULT_BLOCK_ROWS = 256
# Min-reduction chunk: the min of each chunk is a vectorised reduction; the argmin is then looked for only
# inside the first chunk that held the minimum.
_CHUNK = 128
# Register block of the DP: _QUAD segment counts k x _QUAD segment ends b per vectorised loop (_mins_4x4).
_QUAD = 4
# Rows of S joined per step (_join_rows), i.e. segment ends per DP step (_dp_rows, which takes at most 8): their
# costs v(., b) are kept, (_GROUP, T+1).
_GROUP = 8
# Only 'nnan'/'nsz' (they let LLVM vectorise the min reduction): no 'ninf' (infeasible DP states are +inf),
# no 'arcp'/'contract' (they would change the rounding of the costs). S is checked finite in _join_rows,
# which has no fast-math flags, before any value reaches the fast-math kernels.
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
def _mins_4x4(f0, f1, f2, f3, c0, c1, c2, c3, out):
    """out[4 * i + j] = min over a of f_i[a] + c_j[a]: 16 min-plus reductions sharing every load.

    f0..f3: (n,) F[k-1, a0:a1] for four consecutive k; c0..c3: (n,) v(a0:a1, b) for four consecutive b;
    out: (16,). Zero-based views: LLVM vectorises this loop, not one indexed from a0.
    """
    m00 = np.inf
    m01 = np.inf
    m02 = np.inf
    m03 = np.inf
    m10 = np.inf
    m11 = np.inf
    m12 = np.inf
    m13 = np.inf
    m20 = np.inf
    m21 = np.inf
    m22 = np.inf
    m23 = np.inf
    m30 = np.inf
    m31 = np.inf
    m32 = np.inf
    m33 = np.inf
    for a in range(f0.shape[0]):
        x0 = c0[a]
        x1 = c1[a]
        x2 = c2[a]
        x3 = c3[a]
        y = f0[a]
        m00 = _fmin(m00, y + x0)
        m01 = _fmin(m01, y + x1)
        m02 = _fmin(m02, y + x2)
        m03 = _fmin(m03, y + x3)
        y = f1[a]
        m10 = _fmin(m10, y + x0)
        m11 = _fmin(m11, y + x1)
        m12 = _fmin(m12, y + x2)
        m13 = _fmin(m13, y + x3)
        y = f2[a]
        m20 = _fmin(m20, y + x0)
        m21 = _fmin(m21, y + x1)
        m22 = _fmin(m22, y + x2)
        m23 = _fmin(m23, y + x3)
        y = f3[a]
        m30 = _fmin(m30, y + x0)
        m31 = _fmin(m31, y + x1)
        m32 = _fmin(m32, y + x2)
        m33 = _fmin(m33, y + x3)
    out[0] = m00
    out[1] = m01
    out[2] = m02
    out[3] = m03
    out[4] = m10
    out[5] = m11
    out[6] = m12
    out[7] = m13
    out[8] = m20
    out[9] = m21
    out[10] = m22
    out[11] = m23
    out[12] = m30
    out[13] = m31
    out[14] = m32
    out[15] = m33


@njit(cache=True, nogil=True, fastmath=_FAST)
def _first_equal(p, c, v):
    """The smallest a with p[a] + c[a] == v (p, c: (n,) zero-based views), or n: a vectorised search."""
    n = p.shape[0]
    first = n
    for a in range(n):
        first = min(first, a if p[a] + c[a] == v else n)
    return first


@njit(cache=True, nogil=True, fastmath=_FAST)
def _dp_rows(F, arg, cost, b0, nb, min_size, out, best, start):
    """F[k, b], arg[k, b] for every k >= 1 and the nb <= 8 segment ends b = b0 .. b0+nb-1    (BAPG eq. 5).

    F:    (K+1, T+1) float64 DP values, +inf where infeasible; (K - 1) % 4 == 0 (rows padded to whole k-quads)
    arg:  (K+1, T+1) int32 start a of the last segment of the optimum (-1 where infeasible)
    cost: (>= nb, T+1) cost[j, a] = v(a, b0 + j) for a < b0 + j, j < nb
    out: (16,) float64, best: (32,) float64, start: (32,) int64 scratch
    The last segment [a, b) of k segments has a in [(k-1)*min_size, b-min_size]. Starts a < a_far = b0-min_size+1
    are candidates for every b here, and F[., a] is final there: they go through _mins_4x4, chunk by chunk, four
    k by four b (two b-quads per chunk of F, which is then read from L1 the second time); the argmin is looked
    for in the first chunk holding the minimum. Starts a >= a_far follow, one by one, b ascending then k
    ascending, so that F[k-1, a] for a in [a_far, b) is ready.
    """
    K = F.shape[0] - 1
    T = F.shape[1] - 1
    for j in range(nb):  # one segment
        b = b0 + j
        if b >= min_size or b == T:  # (b == T: a video shorter than min_size is one segment)
            F[1, b] = cost[j, 0]
            arg[1, b] = 0
    a_far = b0 - min_size + 1
    b_last = b0 + nb - 1
    c0 = cost[0]
    c1 = cost[min(1, nb - 1)]  # a missing b (nb < 8) repeats another; its results are dropped
    c2 = cost[min(2, nb - 1)]
    c3 = cost[min(3, nb - 1)]
    c4 = cost[min(4, nb - 1)]
    c5 = cost[min(5, nb - 1)]
    c6 = cost[min(6, nb - 1)]
    c7 = cost[min(7, nb - 1)]
    for k0 in range(2, K + 1, _QUAD):
        lo = (k0 - 1) * min_size  # F[k-1, a] = +inf for a < (k-1)*min_size, so lo serves k0 .. k0+3
        if lo > b_last - min_size:
            break  # no k >= k0 fits in any of these b: F stays +inf
        for i in range(32):
            best[i] = np.inf
            start[i] = lo
        for a0 in range(lo, a_far, _CHUNK):
            a1 = min(a0 + _CHUNK, a_far)
            f0 = F[k0 - 1, a0:a1]
            f1 = F[k0, a0:a1]
            f2 = F[k0 + 1, a0:a1]
            f3 = F[k0 + 2, a0:a1]
            _mins_4x4(f0, f1, f2, f3, c0[a0:a1], c1[a0:a1], c2[a0:a1], c3[a0:a1], out)
            for i in range(16):
                if out[i] < best[i]:  # strict: the earliest chunk holding the minimum wins
                    best[i] = out[i]
                    start[i] = a0
            if nb > 4:
                _mins_4x4(f0, f1, f2, f3, c4[a0:a1], c5[a0:a1], c6[a0:a1], c7[a0:a1], out)
                for i in range(16):
                    if out[i] < best[16 + i]:
                        best[16 + i] = out[i]
                        start[16 + i] = a0
        for j in range(nb):
            b = b0 + j
            cj = cost[j]
            for i in range(_QUAD):
                k = k0 + i
                prev = F[k - 1]
                slot = 16 * (j // 4) + 4 * i + j % 4
                v = best[slot]
                am = -1
                if v < np.inf:
                    s = start[slot]
                    e = min(s + _CHUNK, a_far)
                    am = s + _first_equal(prev[s:e], cj[s:e], v)
                for a in range(max(lo, a_far), b - min_size + 1):
                    x = prev[a] + cj[a]
                    if x < v:  # strict: the smallest a wins a tie
                        v = x
                        am = a
                F[k, b] = v
                arg[k, b] = am


@njit(cache=True, nogil=True)
def _chains(rows, j0, n, cols, c_row0, c_col, a_hi, a_lo, s_out, run):
    """The running sums of rows r .. r+n-1 of S (n <= 4) over the starts a = a_hi-1 down to a_lo.

    rows[j0 + j, a] = S[r+j, a]; cols[a - c_row0, c_col + j] = S[a, r+j]; run: (n,) the sums s_j (in and out)
    s_j += S[r+j, a] + S[a, r+j], then s_out[j, a] = s_j. Four rows: four independent add chains.
    """
    if n < 4:
        for j in range(n):
            s = run[j]
            for a in range(a_hi - 1, a_lo - 1, -1):
                s += np.float64(rows[j0 + j, a]) + np.float64(cols[a - c_row0, c_col + j])
                s_out[j, a] = s
            run[j] = s
        return
    s0, s1, s2, s3 = run[0], run[1], run[2], run[3]
    for a in range(a_hi - 1, a_lo - 1, -1):
        ca = a - c_row0
        s0 += np.float64(rows[j0, a]) + np.float64(cols[ca, c_col])
        s_out[0, a] = s0
        s1 += np.float64(rows[j0 + 1, a]) + np.float64(cols[ca, c_col + 1])
        s_out[1, a] = s1
        s2 += np.float64(rows[j0 + 2, a]) + np.float64(cols[ca, c_col + 2])
        s_out[2, a] = s2
        s3 += np.float64(rows[j0 + 3, a]) + np.float64(cols[ca, c_col + 3])
        s_out[3, a] = s3
    run[0], run[1], run[2], run[3] = s0, s1, s2, s3


@njit(cache=True, nogil=True)
def _sums_to_costs(qsum, c, dj, diag_cum, rr):
    """Row rr of S joins the block sums, and c becomes v(., b) for b = rr + 1               (BAPG eq. 4).

    qsum: (T+1,) Q(a, rr) in, Q(a, rr+1) out; c: (T+1,) s(a) = sum_{i=a}^{rr-1} (S[rr, i] + S[i, rr]) in,
    v(a, rr+1) out for a <= rr; dj = S[rr, rr].
    Q(a, b) = Q(a, b-1) + (S[b-1, b-1] + s(a));  v(a, b) = (sum of the diagonal over [a, b)) - Q(a, b) / (b - a)
    """
    b = rr + 1
    db = diag_cum[b]
    qsum[rr] = dj
    c[rr] = (db - diag_cum[rr]) - dj / 1
    q = qsum[:rr]  # (rr,)
    s = c[:rr]  # (rr,)
    dc = diag_cum[:rr]  # (rr,)
    for a in range(rr):
        x = q[a] + (dj + s[a])
        q[a] = x
        s[a] = (db - dc[a]) - x / (b - a)


@njit(cache=True, nogil=True)
def _join_rows(lower, upper, r0, g0, n, diag_cum, qsum, cost, d, run):
    """Rows r = r0+g0 .. r+n-1 of S (n <= 8) join: cost[j, a] = v(a, r+j+1) for a <= r+j.

    lower: (nb, r0+nb) S[r0:r0+nb, 0:r0+nb]; upper: (r0, nb) S[0:r0, r0:r0+nb]   (float32 or float64)
    diag_cum: (T+1,) cumulative sum of diag(S); qsum: (T+1,) block sums Q(a, b) for the current b, in place;
    cost: (>= n, T+1) out; d, run: (>= n,) float64 scratch.
    Q(a, b) = Q(a, b-1) + S[b-1, b-1] + sum_{i=a}^{b-2} (S[b-1, i] + S[i, b-1]): each new row's sum runs from
    its diagonal down (one add chain per row, four rows at a time: _chains, into the cost rows), then the rows
    join Q in increasing order, which is vectorised along a (_sums_to_costs).
    Returns -1, or the first row whose row or column of S holds a NaN/inf (a non-finite value anywhere in
    row/column r propagates to its running sum).
    """
    r = r0 + g0
    for j in range(n):  # the diagonal and the triangle a in [r, r+j) of each new row
        rr = r + j
        dj = np.float64(lower[g0 + j, rr])
        diag_cum[rr + 1] = diag_cum[rr] + dj
        d[j] = dj
        s = 0.0
        for a in range(rr - 1, r - 1, -1):
            s += np.float64(lower[g0 + j, a]) + np.float64(lower[a - r0, rr])
            cost[j, a] = s
        run[j] = s
    for j4 in range(0, n, 4):
        m = min(4, n - j4)
        # a inside the block (S[a, r+j] = lower[a - r0, r+j]), then above it (S[a, r+j] = upper[a, g0+j])
        _chains(lower, g0 + j4, m, lower, r0, r + j4, r, r0, cost[j4:j4 + m], run[j4:j4 + m])
        _chains(lower, g0 + j4, m, upper, 0, g0 + j4, r0, 0, cost[j4:j4 + m], run[j4:j4 + m])
    for j in range(n):
        if not np.isfinite(run[j] + d[j]):
            return r + j
    for j in range(n):  # rows in increasing order
        _sums_to_costs(qsum, cost[j], d[j], diag_cum, r + j)
    return -1


@njit(cache=True, nogil=True)
def _dp_block(lower, upper, r0, diag_cum, qsum, cost, F, arg, min_size):
    """Advance the DP over segment ends b = r0+1 .. r0+nb using rows r0 .. r0+nb-1 of S, eight at a time.

    lower:   (nb, r0+nb) S[r0:r0+nb, 0:r0+nb]   (the block's rows, up to the block diagonal)
    upper:   (r0, nb)    S[0:r0, r0:r0+nb]      (the block's columns above it)
    diag_cum:(T+1,) cumulative sum of diag(S); qsum: (T+1,) block sums Q[a] = sum S[a:b, a:b] for the current b
    cost:    (8, T+1) scratch for v(., b) of eight b; F: (K+1, T+1) DP values; arg: (K+1, T+1) int32 argmins
    Returns -1, or the first row r whose row or column of S holds a NaN/inf (nothing from its group of eight
    rows on is computed).
    """
    nb = lower.shape[0]
    G = cost.shape[0]
    d = np.empty(G)
    run = np.empty(G)
    out = np.empty(16)
    best = np.empty(32)
    start = np.empty(32, dtype=np.int64)
    for g0 in range(0, nb, G):
        n = min(G, nb - g0)
        bad = _join_rows(lower, upper, r0, g0, n, diag_cum, qsum, cost, d, run)
        if bad >= 0:
            return bad
        _dp_rows(F, arg, cost, r0 + g0 + 1, n, min_size, out, best, start)
    return -1


class _BlockReader:
    """S[rows, cols] blocks as float32/float64 arrays numba can read (float16 widened: numba has no float16
    arithmetic). numpy arrays and memmaps of float32/float64 give views (no copy); float16 blocks are widened
    into two reused float32 buffers of (block_rows, T) and (T, block_rows); other sources (zarr, h5py) give
    the array they return."""

    def __init__(self, similarity, T: int, block_rows: int):
        self.similarity, self.T, self.block_rows = similarity, T, block_rows
        self.buffers = {}

    def __call__(self, rows: slice, cols: slice, which: str) -> np.ndarray:
        block = self.similarity[rows, cols]
        if not isinstance(block, np.ndarray):
            block = np.asarray(block)
        if block.dtype in (np.float32, np.float64):
            return block
        if block.dtype != np.float16:
            return block.astype(np.float64)
        if which not in self.buffers:
            shape = (self.block_rows, self.T) if which == "lower" else (self.T, self.block_rows)
            self.buffers[which] = np.empty(shape, dtype=np.float32)
        out = self.buffers[which][:block.shape[0], :block.shape[1]]
        np.copyto(out, block)
        return out


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
    """Forward DP up to kmax segments.

    Returns F (kmax+1, T+1) float64, arg (kmax+1, T+1) int32 (views of tables padded to whole k-quads) and
    the sum of diag(S).
    """
    T = _check_square(similarity, where)
    if block_rows < 1:
        raise ValueError(f"{where}: block_rows must be >= 1, got {block_rows}")
    K = 1 + _QUAD * -(-(kmax - 1) // _QUAD)  # kmax rounded up so that k = 2..K is whole k-quads
    diag_cum = np.zeros(T + 1)  # (T+1,)
    qsum = np.zeros(T + 1)  # (T+1,)
    cost = np.zeros((_GROUP, T + 1))  # (8, T+1): v(., b) for eight consecutive b
    F = np.full((K + 1, T + 1), np.inf)  # (K+1, T+1)
    arg = np.full((K + 1, T + 1), -1, dtype=np.int32)  # (K+1, T+1)
    read = _BlockReader(similarity, T, block_rows)
    for r0 in range(0, T, block_rows):
        r1 = min(T, r0 + block_rows)
        lower = read(slice(r0, r1), slice(0, r1), "lower")  # (nb, r1)
        upper = read(slice(0, r0), slice(r0, r1), "upper")  # (r0, nb)
        if upper.dtype != lower.dtype:
            upper = upper.astype(lower.dtype)
        bad = _dp_block(lower, upper, r0, diag_cum, qsum, cost, F, arg, min_size)
        if bad >= 0:
            _locate_non_finite(similarity, bad, where)
    return F[:kmax + 1], arg[:kmax + 1], float(diag_cum[T])


def _backtrack(arg: np.ndarray, k: int, T: int) -> np.ndarray:
    """Segment starts of the optimal k-segmentation of [0, T), without 0: (k-1,) int64 ascending."""
    cps = np.empty(k - 1, dtype=np.int64)
    b = T
    for kk in range(k, 1, -1):
        a = int(arg[kk, b])
        cps[kk - 2] = a
        b = a
    return cps


@dataclass(frozen=True, eq=False)
class Segmentation:
    """The optimal segmentations of one similarity matrix for every count m = 0 .. max_change_points.

    num_steps:         T, the number of feature steps
    max_change_points: the largest m computed: the one asked for, or fewer when m + 1 segments of length
                       >= min_size do not fit in T steps (T // min_size - 1)
    min_size:          minimum segment length in feature steps
    vmax:              mean of diag(S) (1 for a cosine similarity), the scale of the KTS penalty
    name:              the matrix/video, for messages
    table:             (max_change_points + 2, T + 1) float64, table[k, b] = least cost of k segments of [0, b)
    starts:            (max_change_points + 2, T + 1) int32, the start of the last of those segments
    """
    num_steps: int
    max_change_points: int
    min_size: int
    vmax: float
    name: str
    table: np.ndarray = field(repr=False)
    starts: np.ndarray = field(repr=False)

    def _check(self, m) -> int:
        m = int(m)
        if not 0 <= m <= self.max_change_points:
            raise ValueError(f"{self.name}: m = {m} change points is outside the computed 0 .. "
                             f"{self.max_change_points}")
        return m

    def cost(self, m: int) -> float:
        """Least total cost (sum of v over the segments) of m change points: F[m+1][T]."""
        return float(self.table[self._check(m) + 1, self.num_steps])

    def costs(self) -> np.ndarray:
        """(max_change_points + 1,) float64: cost(m) for m = 0 .. max_change_points (non-increasing for min_size 1)."""
        return self.table[1:, self.num_steps].copy()

    def change_points(self, m: int) -> np.ndarray:
        """(m,) int64 ascending: the steps 0 < t < T at which the segments of the optimal m-segmentation start."""
        return _backtrack(self.starts, self._check(m) + 1, self.num_steps)


def segment(similarity, max_change_points: int, min_size: int = 1, block_rows: int = DEFAULT_BLOCK_ROWS,
            name: str = "similarity") -> Segmentation:
    """One DP pass over S up to max_change_points: the optimal segmentation for every smaller count too.

    similarity: (T, T) array-like (numpy, memmap, zarr or h5py array; any float dtype), read in blocks of
        `block_rows` rows. `name` (e.g. the video id or file) is used in error messages.
    max_change_points: m >= 0; capped, without a warning, to the most that fit (T // min_size - 1, see
        Segmentation.max_change_points).
    min_size: minimum segment length in feature steps (>= 1).
    Memory: two (m + 2, T + 1) tables (8 + 4 bytes per entry) and a few (T + 1,) vectors beyond S's row block.
    Raises ValueError naming `name` for a non-square S or a NaN/inf in it.
    """
    if int(max_change_points) < 0:
        raise ValueError(f"{name}: numbers of change points must be >= 0, got {max_change_points}")
    if int(min_size) < 1:
        raise ValueError(f"{name}: min_size must be >= 1, got {min_size}")
    min_size = int(min_size)
    T = _check_square(similarity, name)
    kmax = min(int(max_change_points) + 1, max(1, T // min_size))
    F, arg, diag_sum = _run_dp(similarity, kmax, min_size, int(block_rows), name)
    return Segmentation(num_steps=T, max_change_points=kmax - 1, min_size=min_size, vmax=diag_sum / T,
                        name=name, table=F, starts=arg)


def change_points(similarity, ms=DEFAULT_MS, min_size: int = 1, block_rows: int = DEFAULT_BLOCK_ROWS,
                  name: str = "similarity") -> dict[int, np.ndarray]:
    """Optimal change points of S for every m in `ms` from one DP pass (`segment`).

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
    seg = segment(similarity, max(ms), min_size=min_size, block_rows=block_rows, name=name)
    out = {}
    for m in ms:
        if m > seg.max_change_points:
            warnings.warn(f"{name}: {m} change points do not fit in T = {seg.num_steps} steps with min_size = "
                          f"{seg.min_size}; returning {seg.max_change_points}", RuntimeWarning, stacklevel=2)
        out[m] = seg.change_points(min(m, seg.max_change_points))
    return out


def counts_from_rates(num_steps: int, seconds: float, rates, min_size: int = 1, minimum: int = 1) -> list[int]:
    """Change-point counts for a video of `seconds` seconds and `num_steps` feature steps, one per rate.

    rates: change points per minute of video (>= 0), in any order; each gives
        m = max(minimum, round(rate * seconds / 60))     (round: Python's, half to even),
    capped to the most that fit, num_steps // min_size - 1 (and never below 0). Returns a list in the order of
    `rates`; equal counts stay (a short video may get the same m for two rates).
    """
    rates = [float(r) for r in (rates if np.ndim(rates) else [rates])]
    if any(not math.isfinite(r) or r < 0 for r in rates):
        raise ValueError(f"rates must be finite and >= 0 change points per minute, got {rates}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"video duration must be finite and >= 0 seconds, got {seconds}")
    if int(min_size) < 1 or int(num_steps) < 0 or int(minimum) < 0:
        raise ValueError(f"need num_steps >= 0, min_size >= 1, minimum >= 0; got {num_steps}, {min_size}, "
                         f"{minimum}")
    fit = max(int(num_steps) // int(min_size) - 1, 0)
    return [min(max(int(minimum), int(round(r * float(seconds) / 60.0))), fit) for r in rates]


def penalised_criterion(seg: Segmentation, penalty: float = 1.0) -> np.ndarray:
    """(max_change_points + 1,) float64: the KTS model-selection criterion of `penalised_count` for each m."""
    T = seg.num_steps
    m = np.arange(1, seg.max_change_points + 1, dtype=np.float64)  # (M,)
    pen = np.zeros(seg.max_change_points + 1)  # (M+1,) the penalty term is 0 for m = 0
    pen[1:] = float(penalty) * seg.vmax * (m / (2.0 * T)) * (np.log(T / m) + 1.0)
    return seg.costs() / T + pen


def penalised_count(seg: Segmentation, penalty: float = 1.0) -> int:
    """The number of change points chosen by KTS model selection (Potapov et al. 2014, "Category-specific video
    summarization", ECCV; `cpd_auto` of their kernel temporal segmentation code):

        m* = argmin_{m = 0 .. seg.max_change_points}  cost(m) / T + penalty * vmax * (m / (2 T)) * (log(T / m) + 1)

    cost(m) = seg.cost(m) (the least total within-segment cost of m change points), T = seg.num_steps, vmax =
    seg.vmax = mean of diag(S) (1 for cosine similarity), log the natural logarithm, the penalty term 0 for
    m = 0. KTS uses penalty = 1 (its `cpd_auto` has no such factor). Ties: the smallest m. The search covers
    only the counts `seg` was built for: build it with a generous max_change_points.
    """
    return int(np.argmin(penalised_criterion(seg, penalty)))


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
