"""The time grid (stages/data/timegrid.py): the one in-memory form (TimeGrid), its dict form only through
to_attrs / from_attrs, the feature span in seconds, and the per-video lookup the stages use."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tal_pipeline.stages.data.timegrid import TimeGrid, feature_to_seconds, seconds_to_feature, video_grid


def test_attrs_round_trip_and_plain_numbers():
    grid = TimeGrid(np.float64(30), np.int64(16), 4)
    assert grid.to_attrs() == {"fps": 30.0, "window": 16, "stride": 4}
    assert json.dumps(grid.to_attrs()) == '{"fps": 30.0, "window": 16, "stride": 4}'  # as the stores write it
    assert type(grid.fps) is float and type(grid.window) is int
    assert TimeGrid.from_attrs({**grid.to_attrs(), "symmetric": True, "num_steps": 7}) == grid
    assert TimeGrid(30, 16, 4) == grid and hash(TimeGrid(30, 16, 4)) == hash(grid)
    with pytest.raises(ValueError, match="video 'v'.*'stride'"):
        TimeGrid.from_attrs({"fps": 30.0, "window": 16}, "video 'v'")


def test_conversions_are_the_module_functions():
    grid = TimeGrid(25.0, 16, 4)
    steps = np.array([0.0, 1.0, 2.5, 100.0])
    np.testing.assert_array_equal(grid.to_seconds(steps), feature_to_seconds(steps, 25.0, 16, 4))
    np.testing.assert_array_equal(grid.to_steps(grid.to_seconds(steps)), steps)
    np.testing.assert_array_equal(grid.to_steps([1.0, 2.0]), seconds_to_feature([1.0, 2.0], 25.0, 16, 4))
    assert grid.to_seconds(0) == pytest.approx(8 / 25)
    assert grid.step_seconds == 4 / 25
    assert grid.to_seconds(1) - grid.to_seconds(0) == pytest.approx(grid.step_seconds)


def test_span_seconds_is_steps_times_stride_over_fps():
    # the exact float the change-point rates were always counted on: (T * stride) / fps
    for T, stride, fps in ((12548, 4, 30.0), (1001, 8, 29.97), (7, 3, 7.0)):
        assert TimeGrid(fps, 16, stride).span_seconds(T) == T * stride / fps
    assert TimeGrid(30.0, 16, 4).span_seconds(75) == 10.0


def test_video_grid_one_for_all_or_per_video():
    a, b = TimeGrid(10.0, 4, 2), TimeGrid(30.0, 16, 4)
    assert video_grid(a, "anything") is a
    assert video_grid({"x": a, "y": b}, "y") is b
    with pytest.raises(ValueError, match="video 'z': no time grid"):
        video_grid({"x": a}, "z")
    with pytest.raises(TypeError, match="video 'x'.*TimeGrid.from_attrs"):
        video_grid({"x": a.to_attrs()}, "x")
