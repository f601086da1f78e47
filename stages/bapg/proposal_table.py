"""Proposals from TSC change points (BAPG II-C; docs/method.md §4): a video's proposal table.

A segment of feature steps [a, b) spans, in seconds, from the start of step a to the end of step b-1:
    start = grid.to_seconds(a) - step / 2,   end = grid.to_seconds(b - 1) + step / 2,
with step = grid.step_seconds (stride / fps) the time between two features, clipped to [0, duration] when the
duration is known. (Feature i is centred at grid.to_seconds(i); consecutive steps tile the time line.)

Proposals of one video: for each m, the m+1 segments of the segmentation and the unions of 2..max_union
consecutive segments; deduplicated across m (a span keeps the first (m, n_segments) that produced it).
Built from change points alone, the rank is the row order: m ascending, then n_segments ascending, then start
ascending. The TSCProposals stage scores and re-ranks them by their contrast in S (stages/bapg/proposal_scoring.py).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tal_pipeline.stages.data.timegrid import TimeGrid

COLUMNS = ["start", "end", "start_step", "end_step", "m", "n_segments", "score"]


def proposals_from_change_points(change_points: dict[int, np.ndarray], num_steps: int, grid: TimeGrid,
                                 duration: float | None = None, max_union: int = 3, dedup: bool = True
                                 ) -> pd.DataFrame:
    """Proposal table of one video from {m: change points (m,) int} over `num_steps` feature steps.

    Returns a DataFrame with columns start, end (float64 seconds), start_step, end_step (int64, the span
    [start_step, end_step) of feature steps), m (int64, the segmentation it came from) and n_segments
    (int64, how many consecutive segments were joined), in rank order (see module docstring).
    dedup=False keeps every m's full set (a span produced by several m appears once per m; duplicates within
    one m cannot occur): what recall_by_m needs. table.attrs["dedup"] records the choice.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if max_union < 1:
        raise ValueError(f"max_union must be >= 1, got {max_union}")
    rows: list[tuple[int, int, int, int]] = []  # (start_step, end_step, m, n_segments)
    seen: set[tuple[int, int]] = set()
    for m in sorted(change_points):
        cps = np.asarray(change_points[m], dtype=np.int64)
        if cps.size and (cps[0] <= 0 or cps[-1] >= num_steps or np.any(np.diff(cps) <= 0)):
            raise ValueError(f"change points for m={m} must be ascending in (0, {num_steps}), got {cps.tolist()}")
        bounds = np.concatenate([[0], cps, [num_steps]])  # (n_seg + 1,)
        n_seg = len(bounds) - 1
        for n in range(1, min(max_union, n_seg) + 1):
            for i in range(n_seg - n + 1):
                span = (int(bounds[i]), int(bounds[i + n]))
                key = span if dedup else (*span, int(m))
                if key not in seen:
                    seen.add(key)
                    rows.append((*span, int(m), n))
    table = pd.DataFrame(rows, columns=["start_step", "end_step", "m", "n_segments"]).astype("int64")
    half = grid.step_seconds / 2.0
    start = grid.to_seconds(table["start_step"].to_numpy()) - half  # (N,)
    end = grid.to_seconds(table["end_step"].to_numpy() - 1) + half  # (N,)
    hi = np.inf if duration is None else float(duration)
    table.insert(0, "start", np.clip(start, 0.0, hi))
    table.insert(1, "end", np.clip(end, 0.0, hi))
    table["score"] = np.nan  # unscored: see score_proposals
    table = table[COLUMNS]
    table.attrs["dedup"] = bool(dedup)
    return table
