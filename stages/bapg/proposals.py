"""The TSCProposals stage: a video's change points at every scale, from its boundary source
(stages/bapg/boundary_sources.py), and its proposal table (stages/bapg/proposal_table.py), cached in Zarr.
Reading such a store: stages/bapg/proposal_store.py; recall from it: stages/bapg/proposal_recall.py."""
from __future__ import annotations

import numpy as np

from tal_pipeline.stages.bapg.boundary_sources import (
    BOUNDARY_SOURCES,
    SIMILARITY_SOURCES,
    check_source,
    oracle_scales,
    random_scales,
    similarity_change_points,
)
from tal_pipeline.stages.bapg.proposal_recall import recall_table_from_store
from tal_pipeline.stages.bapg.proposal_scoring import score_proposals
from tal_pipeline.stages.bapg.proposal_store import read_change_points
from tal_pipeline.stages.bapg.proposal_table import COLUMNS, proposals_from_change_points
from tal_pipeline.stages.bapg.scales import Scales
from tal_pipeline.stages.data.timegrid import TimeGrid

# pipeline/ imports the sources and the recall table through this module, the TSCProposals stage's
__all__ = ["BOUNDARY_SOURCES", "SIMILARITY_SOURCES", "recall_table_from_store", "tsc_proposals_to_store"]
RANKS = {True: "score descending (contrast with the surroundings in S), then m, n_segments, start",
         False: "m ascending, then n_segments, then start (unscored)"}  # by: scored or not


def tsc_proposals_to_store(video: str, *, store_path: str, scales: Scales, source: str = "tsc",
                           similarity_store: str | None = None, tsc_store: str | None = None,
                           features_store: str | None = None, max_union: int = 3,
                           durations: dict[str, float] | None = None, gt_seconds: dict | None = None,
                           seed: int = 0) -> None:
    """Change points of one video at every scale of `scales`, then its proposal table in Zarr.

    source "tsc" / "raw": TSC on the video's similarity matrix (similarity_store, read in row blocks); "random":
    as many random change points per scale as the TSC store (tsc_store) has; "oracle": the ground-truth action
    boundaries (gt_seconds {video: (G, 2)}; features_store gives the time grid).
    The video's array is the deduplicated proposal table as float64 (N, 6) with columns COLUMNS; its attributes
    hold the change points per count m ({"10": [...], ...}), the scales in feature order ([{"name", "m"}]), the
    number of steps and the time grid. durations: {video: seconds} (proposal ends are clipped to it).
    """
    from tal_pipeline.storage.zarr_store import ArtifactStore

    check_source(source)
    scored = source in SIMILARITY_SOURCES
    if scored:
        similarity = ArtifactStore(similarity_store).read(video)  # (T, T) float16, read block-wise by the DP
        T, grid = int(similarity.shape[0]), TimeGrid.from_attrs(similarity.attrs, f"video {video!r}")
        found = similarity_change_points(similarity, grid, scales, video)
    elif source == "random":
        _, ref = read_change_points(tsc_store, video)
        T, grid = int(ref["num_steps"]), TimeGrid.from_attrs(ref, f"video {video!r}")
        found = random_scales(ref["scales"], T, video, seed)
    else:
        features = ArtifactStore(features_store).read(video)
        T, grid = int(features.shape[0]), TimeGrid.from_attrs(features.attrs, f"video {video!r}")
        found = oracle_scales((gt_seconds or {}).get(video), T, grid, scales)
    cps_by_m = {len(c): c for _, c in found}
    duration = (durations or {}).get(video)
    duration = None if duration is None or not np.isfinite(duration) else float(duration)
    table = proposals_from_change_points(cps_by_m, T, grid, duration=duration, max_union=max_union)
    if scored:
        table = score_proposals(table, similarity)
    meta = {"columns": COLUMNS, "change_points": {str(m): c.tolist() for m, c in cps_by_m.items()},
            "scales": [{"name": label, "m": int(len(c))} for label, c in found], "source": source, "num_steps": T,
            **grid.to_attrs(), "duration": duration, "max_union": int(max_union), "min_size": scales.min_size,
            "rank": RANKS[scored]}
    ArtifactStore(store_path).write_video(video, table.to_numpy(dtype=np.float64), 4096, ["proposal", "column"], meta)
