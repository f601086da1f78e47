"""Reads of a TSCProposals store (written by stages/bapg/proposals.py): a video's change points per count, its
scales in feature order, and its proposal table."""
from __future__ import annotations

import numpy as np
import pandas as pd


def read_change_points(store_path: str, video: str) -> tuple[dict[int, np.ndarray], dict]:
    """Change points {m: (m,) int64} of one video from a TSCProposals store, and the array's attributes."""
    from tal_pipeline.storage.zarr_store import ArtifactStore

    attrs = dict(ArtifactStore(store_path).read(video).attrs)
    return {int(m): np.asarray(c, dtype=np.int64) for m, c in attrs["change_points"].items()}, attrs


def read_scales(store_path: str, video: str) -> list[tuple[str, np.ndarray]]:
    """[(scale name, change points)] of one video in feature order."""
    cps, attrs = read_change_points(store_path, video)
    return [(s["name"], cps[int(s["m"])]) for s in attrs["scales"]]


def read_proposals(store_path: str, video: str) -> pd.DataFrame:
    """The cached (deduplicated, ranked) proposal table of one video."""
    from tal_pipeline.storage.zarr_store import ArtifactStore

    array = ArtifactStore(store_path).read(video)
    table = pd.DataFrame(np.asarray(array[...]), columns=list(array.attrs["columns"]))
    for col in ("start_step", "end_step", "m", "n_segments"):
        table[col] = table[col].astype("int64")
    return table
