"""One sampled frame per feature step: the input of the frame encoder Phi (`encoder: cnn`, docs/method.md §2).

The paper's Phi is a CNN on frames; the similarity matrix, TSC and everything downstream live on the feature
grid (stages.data.timegrid). So the frame encoder sees, for feature step i, the sampled frame on screen at the
centre time of I3D window i, `c_i = (i*stride + window/2) / fps` seconds: the last sampled frame k whose
sample time t_k <= c_i (SampleFrames' own rule, "the frame on screen at t"). Its embeddings are then exactly
on the feature grid: one per step, T' of them, and S is (T', T') as with the feature encoder.

With the features extracted from the same frames (ExtractFeatures: frames at `fps`, t_k = k / fps) this is
frame `i*stride + window//2`: for the default window 16 and stride 4, frame 4i + 8, the first frame of the
window's second half (an even window has no middle frame; the one at its centre time is that one). With
imported features on another clock the rule is the same, by time.

Memory: only the T' selected frames of a video are read (a Zarr orthogonal selection decodes one chunk at a time),
never the video's whole (T, H, W, 3) array: a quarter of its frames at stride 4.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tal_pipeline.stages.data.timegrid import TimeGrid

# SampleFrames writes the sample times rounded to 6 decimals: a centre that equals a sample time up to that
# rounding lands on that sample, not on the one before it.
TIME_TOLERANCE = 1e-6


def frame_times(attrs, num_frames: int, where: str = "frames") -> np.ndarray:
    """(T,) float64 sample times in seconds of a frames array: its recorded `timestamps` (SampleFrames), else
    k / fps for a store that lacks them."""
    times = attrs.get("timestamps")
    if times is not None and len(times) == num_frames:
        return np.asarray(times, dtype=np.float64)
    if times is not None:
        raise ValueError(f"{where}: {len(times)} recorded timestamps for {num_frames} frames")
    fps = attrs.get("fps")
    if not fps or fps <= 0:
        raise ValueError(f"{where}: neither sample timestamps nor a positive fps in the attributes")
    return np.arange(num_frames, dtype=np.float64) / float(fps)


def step_frame_indices(times: np.ndarray, grid: TimeGrid, num_steps: int, frame_period: float,
                       video: str = "") -> np.ndarray:
    """(num_steps,) int64: for feature step i, the index of the sampled frame on screen at the step's centre time
    grid.to_seconds(i), i.e. the last k with times[k] <= centre (times (T,) increasing, seconds).

    frame_period: how long the last frame stays on screen (1 / the frames' fps). A centre before the first
    frame or after the last one's period is refused: the frames do not cover the feature grid.
    """
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"video {video!r}: no sampled frames")
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"video {video!r}: sample times are not increasing")
    centres = grid.to_seconds(np.arange(int(num_steps)))  # (T',)
    idx = np.searchsorted(times, centres + TIME_TOLERANCE, side="right") - 1  # (T',)
    end = times[-1] + frame_period
    bad = np.flatnonzero((idx < 0) | (centres >= end - TIME_TOLERANCE))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"video {video!r}: feature step {i} is centred at {centres[i]:.3f} s, outside the sampled "
                         f"frames ({times[0]:.3f} s to {end:.3f} s): the frames do not cover the feature grid "
                         f"({grid.to_attrs()}, {num_steps} steps)")
    return idx.astype(np.int64)


def feature_grid(features_store: str | Path, video: str) -> tuple[int, TimeGrid]:
    """(T', TimeGrid) of a video's features: its step count and grid, read from the array's metadata alone."""
    from tal_pipeline.storage.zarr_store import ArtifactStore

    array = ArtifactStore(features_store).read(video)
    return int(array.shape[0]), TimeGrid.from_attrs(array.attrs, f"{features_store}: video {video!r}")


def read_step_frames(frames_store: str | Path, video: str, grid: TimeGrid, num_steps: int) -> np.ndarray:
    """uint8 (num_steps, H, W, 3): the frame at each feature step's centre time (step_frame_indices), read from
    a SampleFrames store without loading the video's other frames."""
    from tal_pipeline.storage.zarr_store import ArtifactStore

    array = ArtifactStore(frames_store).read(video)
    where = f"{frames_store}: video {video!r}"
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"{where}: frames must be uint8 (T, H, W, 3), got {array.dtype} {tuple(array.shape)}")
    times = frame_times(array.attrs, int(array.shape[0]), where)
    fps = float(array.attrs.get("fps") or 0)
    period = 1.0 / fps if fps > 0 else float(np.median(np.diff(times))) if times.size > 1 else 0.0
    idx = step_frame_indices(times, grid, num_steps, period, video)
    return np.asarray(array.oindex[idx], dtype=np.uint8)  # (T', H, W, 3)


def load_step_frames(frames_store: str | Path, features_store: str | Path, videos: list[str]
                     ) -> tuple[dict[str, np.ndarray], dict[str, TimeGrid]]:
    """{video: (T', H, W, 3) uint8 frames on its feature grid} and {video: TimeGrid} for the videos that both
    stores hold (a video missing from either was skipped upstream and is listed in that stage's report)."""
    from tal_pipeline.storage.zarr_store import ArtifactStore

    have = set(ArtifactStore(features_store).videos()) & set(ArtifactStore(frames_store).videos())
    frames, grids = {}, {}
    for video in videos:
        if video in have:
            steps, grid = feature_grid(features_store, video)
            frames[video], grids[video] = read_step_frames(frames_store, video, grid, steps), grid
    return frames, grids
