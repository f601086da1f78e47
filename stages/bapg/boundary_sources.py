"""Boundary sources: where a video's change points come from (the TSCProposals stage; docs/method.md §3-4).

"tsc": TSC on the similarity matrix of the encoder's embeddings; "raw": TSC on a similarity matrix of the raw
features; "random": as many random change points per scale as TSC found (the random-boundary ablation);
"oracle": the ground-truth action boundaries, the same segmentation at every scale (the upper bound).
"""
from __future__ import annotations

import zlib

import numpy as np

from tal_pipeline.stages.bapg.scales import Scales, tsc_scales
from tal_pipeline.stages.data.timegrid import TimeGrid, seconds_to_feature

BOUNDARY_SOURCES = ("tsc", "raw", "random", "oracle")
SIMILARITY_SOURCES = ("tsc", "raw")  # the sources whose change points come from TSC on a similarity matrix


def check_source(source: str) -> None:
    if source not in BOUNDARY_SOURCES:
        raise ValueError(f"unknown boundary source {source!r}; known: {BOUNDARY_SOURCES}")


def random_change_points(num_steps: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """m distinct change points drawn uniformly from 1..num_steps-1 (the random-boundary ablation): (m,) int64."""
    m = min(int(m), num_steps - 1)
    return np.sort(rng.choice(np.arange(1, num_steps), size=m, replace=False)).astype(np.int64)


def oracle_change_points(gt_seconds: np.ndarray, num_steps: int, fps: float, window: int, stride: int
                         ) -> np.ndarray:
    """The steps at which ground-truth actions start or end (the boundary upper bound): (m,) int64 ascending.

    A boundary at time s lies at the continuous step x = seconds_to_feature(s); the step boundary nearest to
    it, between steps i-1 and i (at i - 0.5), is the change point i = round(x + 0.5).
    """
    x = seconds_to_feature(np.asarray(gt_seconds, dtype=np.float64).reshape(-1), fps, window, stride)
    cps = np.unique(np.round(x + 0.5).astype(np.int64))
    return cps[(cps > 0) & (cps < num_steps)]


def video_seed(video: str, seed: int) -> int:
    """The random source's seed of one video: its draws do not depend on which other videos run."""
    return zlib.crc32(f"{seed}:{video}".encode()) & 0x7FFFFFFF


def similarity_change_points(similarity, grid: TimeGrid, scales: Scales, video: str) -> list[tuple[str, np.ndarray]]:
    """[(scale name, change points)] of one video by TSC on its similarity matrix S (T, T), read in row blocks."""
    return tsc_scales(similarity, grid.span_seconds(int(similarity.shape[0])), scales, name=f"video {video!r}")


def random_scales(reference_scales: list[dict], num_steps: int, video: str, seed: int
                  ) -> list[tuple[str, np.ndarray]]:
    """[(scale name, random change points)]: as many per scale as the reference (TSC) store's scales hold."""
    rng = np.random.default_rng(video_seed(video, seed))
    return [(s["name"], random_change_points(num_steps, int(s["m"]), rng)) for s in reference_scales]


def oracle_scales(gt_seconds: np.ndarray | None, num_steps: int, grid: TimeGrid, scales: Scales
                  ) -> list[tuple[str, np.ndarray]]:
    """[(scale name, ground-truth boundaries)]: the one oracle segmentation under every scale's name."""
    gt = np.asarray(np.zeros((0, 2)) if gt_seconds is None else gt_seconds, dtype=np.float64)
    cps = oracle_change_points(gt, num_steps, grid.fps, grid.window, grid.stride)
    return [(label, cps) for label in scales.names()]
