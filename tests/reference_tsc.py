"""Test-only TSC segment costs computed directly from S (BAPG eq. 4), for brute-force oracles and hand checks of
the DP in stages/bapg/tsc.py. Not used by the pipeline."""
from __future__ import annotations

import numpy as np


def segment_cost(similarity, a: int, b: int) -> float:
    """v(a, b) of BAPG eq. 4 computed directly from S: 0 <= a < b <= T."""
    S = np.asarray(similarity[a:b, a:b], dtype=np.float64)
    if not 0 <= a < b <= similarity.shape[0]:
        raise ValueError(f"segment [{a}, {b}) is outside [0, {similarity.shape[0]}]")
    return float(np.trace(S) - S.sum() / (b - a))


def segmentation_cost(similarity, cps, T: int | None = None) -> float:
    """Total cost of the segmentation with change points `cps` (sum of v over its segments)."""
    T = similarity.shape[0] if T is None else T
    bounds = [0, *[int(c) for c in cps], T]
    return float(sum(segment_cost(similarity, a, b) for a, b in zip(bounds[:-1], bounds[1:])))
