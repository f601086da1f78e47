"""Numba kernels of Temporal Similarity Clustering (stages/bapg/tsc.py): one row block of S joins the block sums
and advances the min-plus DP of BAPG eqs. 4-5 (`dp_block`).

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
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir as lir
from numba import njit, types
from numba.extending import intrinsic

# Min-reduction chunk: the min of each chunk is a vectorised reduction; the argmin is then looked for only
# inside the first chunk that held the minimum.
_CHUNK = 128
# Register block of the DP: QUAD segment counts k x QUAD segment ends b per vectorised loop (_mins_4x4).
QUAD = 4
# Rows of S joined per step (_join_rows), i.e. segment ends per DP step (_dp_rows, which takes at most 8): their
# costs v(., b) are kept, (GROUP, T+1).
GROUP = 8
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


@njit(inline="always", fastmath=_FAST)
def _min_plus_row(m, y, x0, x1, x2, x3):
    """m[j] = min(m[j], y + x_j), j = 0..3: one k (y = F[k-1, a]) against four segment ends b (x_j = v(a, b_j))."""
    return _fmin(m[0], y + x0), _fmin(m[1], y + x1), _fmin(m[2], y + x2), _fmin(m[3], y + x3)


@njit(cache=True, nogil=True, fastmath=_FAST)
def _mins_4x4(f0, f1, f2, f3, c0, c1, c2, c3, out):
    """out[4 * i + j] = min over a of f_i[a] + c_j[a]: 16 min-plus reductions sharing every load.

    f0..f3: (n,) F[k-1, a0:a1] for four consecutive k; c0..c3: (n,) v(a0:a1, b) for four consecutive b;
    out: (16,). Zero-based views: LLVM vectorises this loop, not one indexed from a0. The 16 running minima
    are four 4-tuples (registers; _min_plus_row is inlined into the loop).
    """
    m0 = m1 = m2 = m3 = (np.inf, np.inf, np.inf, np.inf)
    for a in range(f0.shape[0]):
        x0, x1, x2, x3 = c0[a], c1[a], c2[a], c3[a]
        m0 = _min_plus_row(m0, f0[a], x0, x1, x2, x3)
        m1 = _min_plus_row(m1, f1[a], x0, x1, x2, x3)
        m2 = _min_plus_row(m2, f2[a], x0, x1, x2, x3)
        m3 = _min_plus_row(m3, f3[a], x0, x1, x2, x3)
    for j in range(QUAD):
        out[j] = m0[j]
        out[QUAD + j] = m1[j]
        out[2 * QUAD + j] = m2[j]
        out[3 * QUAD + j] = m3[j]


@njit(cache=True, nogil=True, fastmath=_FAST)
def _first_equal(p, c, v):
    """The smallest a with p[a] + c[a] == v (p, c: (n,) zero-based views), or n: a vectorised search."""
    n = p.shape[0]
    first = n
    for a in range(n):
        first = min(first, a if p[a] + c[a] == v else n)
    return first


@njit(cache=True, nogil=True, fastmath=_FAST)
def _far_minima(F, cost, k0, lo, a_far, nb, out, best, start):
    """min over the far starts a in [lo, a_far) of F[k-1, a] + v(a, b) for k = k0..k0+3 and the nb <= 8 ends b.

    best[slot], slot = 16 * (j // 4) + 4 * i + j % 4 for k = k0 + i and b = b0 + j: the minimum (+inf: none);
    start[slot]: the first chunk holding it (lo: none). Chunk by chunk, four k by four b (_mins_4x4; two b-quads
    per chunk of F, which is then read from L1 the second time).
    """
    c0 = cost[0]
    c1 = cost[min(1, nb - 1)]  # a missing b (nb < 8) repeats another; its results are dropped
    c2 = cost[min(2, nb - 1)]
    c3 = cost[min(3, nb - 1)]
    c4 = cost[min(4, nb - 1)]
    c5 = cost[min(5, nb - 1)]
    c6 = cost[min(6, nb - 1)]
    c7 = cost[min(7, nb - 1)]
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


@njit(cache=True, nogil=True, fastmath=_FAST)
def _settle(F, arg, cost, k0, lo, a_far, b0, nb, min_size, best, start):
    """F[k, b], arg[k, b] for k = k0..k0+3 and b = b0..b0+nb-1: the far minimum (_far_minima) with its argmin
    looked for in its chunk, then the near starts a in [a_far, b - min_size], one by one, b then k ascending."""
    for j in range(nb):
        b = b0 + j
        cj = cost[j]
        for i in range(QUAD):
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


@njit(cache=True, nogil=True, fastmath=_FAST)
def _dp_rows(F, arg, cost, b0, nb, min_size, out, best, start):
    """F[k, b], arg[k, b] for every k >= 1 and the nb <= 8 segment ends b = b0 .. b0+nb-1    (BAPG eq. 5).

    F:    (K+1, T+1) float64 DP values, +inf where infeasible; (K - 1) % 4 == 0 (rows padded to whole k-quads)
    arg:  (K+1, T+1) int32 start a of the last segment of the optimum (-1 where infeasible)
    cost: (>= nb, T+1) cost[j, a] = v(a, b0 + j) for a < b0 + j, j < nb
    out: (16,) float64, best: (32,) float64, start: (32,) int64 scratch
    The last segment [a, b) of k segments has a in [(k-1)*min_size, b-min_size]. Starts a < a_far = b0-min_size+1
    are candidates for every b here, and F[., a] is final there (_far_minima); starts a >= a_far follow, one by
    one, b ascending then k ascending, so that F[k-1, a] for a in [a_far, b) is ready (_settle).
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
    for k0 in range(2, K + 1, QUAD):
        lo = (k0 - 1) * min_size  # F[k-1, a] = +inf for a < (k-1)*min_size, so lo serves k0 .. k0+3
        if lo > b_last - min_size:
            break  # no k >= k0 fits in any of these b: F stays +inf
        _far_minima(F, cost, k0, lo, a_far, nb, out, best, start)
        _settle(F, arg, cost, k0, lo, a_far, b0, nb, min_size, best, start)


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
def dp_block(lower, upper, r0, diag_cum, qsum, cost, F, arg, min_size):
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
