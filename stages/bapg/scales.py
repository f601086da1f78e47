"""Change-point scales: how many change points each video gets at each scale, and the scales' names.

A scale is one segmentation of a video. In feature order (the order of B's channel blocks and of a TSCProposals
store's "scales"): the fixed counts `ms` ("m=10"), then the `rates` in change points per minute of the video's
feature span ("8/min": a longer video gets more), then, when `penalty` > 0, the KTS penalised choice ("penalty
1": the count that minimises stages.bapg.tsc.penalised_criterion, which needs the DP's costs). `Scales` holds
them as tuples, converted once where they enter (the TSCProposals task, a checkpoint's inference recipe); its
names are the ones the stores, recall tables and report.json carry. One DP pass per video gives every scale
(`tsc_scales`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def count_name(m: int) -> str:
    """Name of the scale with a fixed count of m change points."""
    return f"m={int(m)}"


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


@dataclass(frozen=True)
class Scales:
    """The scales of a run: fixed counts, rates per minute, KTS penalty (0: none), and the minimum segment length
    in feature steps every segmentation keeps."""

    ms: tuple[int, ...] = ()
    rates: tuple[float, ...] = ()
    penalty: float = 0.0
    min_size: int = 1

    def __post_init__(self):
        # luigi gives tuples, a recipe tuples, a caller lists: all become the same plain tuples here, once
        object.__setattr__(self, "ms", tuple(int(m) for m in self.ms))
        object.__setattr__(self, "rates", tuple(float(r) for r in self.rates))
        object.__setattr__(self, "penalty", float(self.penalty))
        object.__setattr__(self, "min_size", int(self.min_size))

    def names(self) -> list[str]:
        """Names of the scales in feature order, e.g. ["m=10", "8/min", "penalty 1"]."""
        return ([count_name(m) for m in self.ms] + [f"{r:g}/min" for r in self.rates]
                + ([f"penalty {self.penalty:g}"] if self.penalty else []))

    def counts(self, num_steps: int, seconds: float) -> list[int]:
        """Change-point counts of the fixed-count and rate scales of one video of `num_steps` feature steps
        spanning `seconds` (the penalised scale's count needs the DP: tsc_scales)."""
        fit = max(num_steps // self.min_size - 1, 0)
        counts = [min(m, fit) for m in self.ms]
        return counts + (counts_from_rates(num_steps, seconds, self.rates, min_size=self.min_size)
                         if self.rates else [])


def tsc_scales(similarity, seconds: float, scales: Scales, name: str = "similarity") -> list[tuple[str, np.ndarray]]:
    """[(scale name, change points (m,) int64)] of one video from one DP pass over its similarity matrix.

    seconds: the video's feature span (TimeGrid.span_seconds), what the rates count per minute of. The largest
    count bounds the pass; the penalised scale (KTS model selection, stages.bapg.tsc.penalised_count) searches m
    up to that count (or one change point per second of video when it is the only scale).
    """
    from tal_pipeline.stages.bapg.tsc import penalised_count, segment

    T = int(similarity.shape[0])
    counts = scales.counts(T, seconds)
    if not counts and not scales.penalty:
        raise ValueError(f"{name}: no scale given (ms, rates or penalty)")
    top = max(counts) if counts else max(1, int(round(seconds)))
    seg = segment(similarity, top, min_size=scales.min_size, name=name)
    counts = [min(c, seg.max_change_points) for c in counts]
    if scales.penalty:
        counts.append(penalised_count(seg, scales.penalty))
    return [(label, seg.change_points(m)) for label, m in zip(scales.names(), counts)]
