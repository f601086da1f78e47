"""Scheduling at scale (benchmarks/bench_scheduling.py): FullRun's graph on an ActivityNet-shaped feature dataset is
built and scheduled without running anything and with one walk of the feature folder; a store's per-video read does
not list the store."""
from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

from tal_pipeline.storage.zarr_store import ArtifactStore
from tests.conftest import REPO


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scheduling", REPO / "benchmarks" / "bench_scheduling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fullrun_is_scheduled_with_one_walk_and_nothing_run(tmp_path, bench):
    data = bench.ensure_dataset(tmp_path / "data", videos=9, width=16)
    time.sleep(1.1)  # older than pipeline.dataset.RACY_NS: the folder is cached
    workdir = tmp_path / "runs"
    result = bench.schedule(bench.luigi_args(data, workdir), cached=True)
    assert result["scheduled"] is True
    families = set(result["families"])
    assert {"FullRun", "Report", "ImportFeatures", "TrainEncoder", "SimilarityMatrices", "TSCProposals",
            "ProposalFeatures", "TrainDetector", "Detect", "Evaluate", "ClassifyVideos", "FuseVideoClasses"} <= families
    assert "SampleFrames" not in families and "ExtractFeatures" not in families  # imported features
    assert result["tasks"] == len(result["task_ids"]) > 40
    # Every task's output() hashes the dataset identity, upstream paths included: many calls, one walk.
    assert result["walks"] == 1 and result["calls"] > result["tasks"]
    assert not workdir.exists()  # scheduled, never run
    assert bench.one_walk(data) > 0


def test_reading_a_video_does_not_list_the_store(tmp_path):
    store = ArtifactStore(tmp_path / "features.zarr")
    store.begin({"stage": "features", "params": {}})
    for video in ("a", "b"):
        store.write_video(video, np.full((3, 2), ord(video), np.float32), 4, ["time", "feature"])
    (store.path / "half").mkdir()  # a folder without zarr.json: not a finished video
    for name in ("a", "b", "half", "missing", "..", "../features.zarr", "a/"):
        assert store.is_done(name) == (name in store.done_videos()), name
    assert store.read("b")[0, 0] == ord("b")
    for name in ("half", "missing", ".."):
        with pytest.raises(KeyError, match="no finished array"):
            store.read(name)
