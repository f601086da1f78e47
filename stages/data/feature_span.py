"""Feature grids that cannot be wrong silently: a video's feature span (steps x stride / fps seconds) must match
its annotated duration, or the features were imported on the wrong grid.

Features on the ActivityNet TSP grid (15 fps, stride 16) imported on the THUMOS14 I3D grid (stride 4) import
cleanly, but every time is then off by a factor of 4. The span of T steps is T x stride / fps: the windows'
strides laid end to end, which the public features give within a window of the video's length (their last
windows stop where a full window no longer fits, or are padded). Allowed: 20 % of the duration plus one window
(window / fps seconds), so a wrong stride (x2 or more) or a wrong frame rate by a factor >= 1.5 fails, while the
extraction's edge effects and a rounded duration pass.
"""
from __future__ import annotations

import math

from tal_pipeline.stages.presets import PRESETS

SPAN_TOLERANCE = 0.2  # relative, plus one window


def feature_span(steps: int, stride: int, fps: float) -> float:
    """Seconds covered by `steps` feature steps `stride` frames apart at `fps`."""
    return steps * stride / fps


def span_fits(steps: int, window: int, stride: int, fps: float, duration: float) -> bool:
    """Whether the span of `steps` steps on the grid matches `duration` seconds within the tolerance."""
    return abs(feature_span(steps, stride, fps) - duration) <= SPAN_TOLERANCE * duration + window / fps


def _fitting_grid(steps: int, duration: float, video_fps: float, fps: float) -> str:
    """Which grid would fit: a preset's, or else the stride that would at the grid's frame rate."""
    for name, preset in PRESETS.items():
        grid = preset.features
        grid_fps = video_fps if grid.fps is None else grid.fps
        if grid_fps == grid_fps and grid_fps > 0 and span_fits(steps, grid.window, grid.stride, grid_fps, duration):
            return (f"the {grid.describe()} grid would fit ({feature_span(steps, grid.stride, grid_fps):.1f} s): "
                    f"--dataset-preset {name}, or --ImportFeatures-stride {grid.stride} --ImportFeatures-fps "
                    f"{grid_fps:g}")
    return (f"no preset's grid fits; a stride of {duration * fps / steps:.2f} frames at {fps:g} fps would "
            f"(--ImportFeatures-stride, --ImportFeatures-fps)")


def check_feature_span(video: str, steps: int, window: int, stride: int, fps: float, duration: float,
                       video_fps: float = math.nan) -> None:
    """ValueError naming the video, both spans and the grid that would fit, unless the features' span on the
    grid (window, stride, fps) matches the annotated duration; nothing to check when the duration is unknown.
    video_fps: the video's frame rate from the annotations (for presets whose grid takes each video's)."""
    if not (duration == duration and duration > 0):
        return
    if span_fits(steps, window, stride, fps, duration):
        return
    span = feature_span(steps, stride, fps)
    raise ValueError(
        f"video {video!r}: its {steps} feature steps span {span:.1f} s on the grid window {window}, stride "
        f"{stride}, {fps:g} fps (steps x stride / fps), but the annotations give it a duration of {duration:.1f} s "
        f"(allowed: {SPAN_TOLERANCE:.0%} + one window); {_fitting_grid(steps, duration, video_fps, fps)}")
