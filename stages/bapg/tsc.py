"""Temporal Similarity Clustering (BAPG II-C): exact kernel change-point detection on a similarity matrix.

Segment cost of the feature steps [a, b) (BAPG eq. 4; Harchaoui & Cappe kernel change points):

    v(a, b) = sum_{i=a}^{b-1} S[i, i] - (1 / (b - a)) * sum_{i, j in [a, b)} S[i, j]

For m change points the dynamic programme (BAPG eq. 5)

    F[k][b] = min_{a} F[k-1][a] + v(a, b),   F[1][b] = v(0, b)

gives the least total cost of k = m + 1 segments of [0, T). One pass up to k = max(m) + 1 yields the
optimum for every smaller m: `segment` runs it once and returns a `Segmentation` (costs and change points of
every count); `change_points` is the same for a list of counts. Counts chosen per video: the scales of
stages/bapg/scales.py (change points per minute of video) and `penalised_count` (the KTS model selection of
Potapov et al. 2014).

Memory stays O(m_max * T): S is read once, in row blocks, and the DP runs over the segment end b in
increasing order, so only the running block sums Q[a] = sum_{i, j in [a, b)} S[i, j] (one float64 vector)
are kept, never a T x T prefix sum. The block sum uses (S + S^T) / 2, which has the same block sums as S,
so a slightly asymmetric S (float16 rounding) is handled exactly as the formula says.

The DP kernels (Numba: register-blocked min-plus reductions, block sums in row blocks) are in
stages/bapg/tsc_kernels.py; their arithmetic is that of the plain loops, so the costs and change points are the same,
to the bit, as one segment end b and one count k at a time.

Ties: every argmin takes the smallest segment start a, and the backtracking runs from the end, so among
equally good segmentations the last change point is the earliest possible, then the one before it, and so
on (the same rule as ruptures' KernelCPD). Exact ties need exactly equal float64 costs.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from tal_pipeline.stages.bapg.tsc_kernels import GROUP, QUAD, dp_block

DEFAULT_MS = (10, 15, 20)
DEFAULT_BLOCK_ROWS = 256


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
    K = 1 + QUAD * -(-(kmax - 1) // QUAD)  # kmax rounded up so that k = 2..K is whole k-quads
    diag_cum = np.zeros(T + 1)  # (T+1,)
    qsum = np.zeros(T + 1)  # (T+1,)
    cost = np.zeros((GROUP, T + 1))  # (8, T+1): v(., b) for eight consecutive b
    F = np.full((K + 1, T + 1), np.inf)  # (K+1, T+1)
    arg = np.full((K + 1, T + 1), -1, dtype=np.int32)  # (K+1, T+1)
    read = _BlockReader(similarity, T, block_rows)
    for r0 in range(0, T, block_rows):
        r1 = min(T, r0 + block_rows)
        lower = read(slice(r0, r1), slice(0, r1), "lower")  # (nb, r1)
        upper = read(slice(0, r0), slice(r0, r1), "upper")  # (r0, nb)
        if upper.dtype != lower.dtype:
            upper = upper.astype(lower.dtype)
        bad = dp_block(lower, upper, r0, diag_cum, qsum, cost, F, arg, min_size)
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
