import importlib
import json
import re

import numpy as np
import pytest
import zarr

from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.storage.atomic import atomic_folder, atomic_write
from tal_pipeline.storage.features import read_features, write_features
from tal_pipeline.storage.summary import describe_store, plot_video
from tal_pipeline.storage.zarr_store import ArtifactStore


def _store(tmp_path, params=None):
    store = ArtifactStore(tmp_path / "feat-abc.zarr")
    store.begin({"stage": "feat", "params": params or {"a": 1}})
    return store


def test_video_appears_only_when_fully_written(tmp_path):
    store = _store(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with store.video_array("v1", (10, 4), "float32", (4, 4), ["time", "c"]) as arr:
            arr[:4] = 1.0
            assert store.done_videos() == set()  # mid-write: not visible
            raise RuntimeError("boom")
    assert store.done_videos() == set()
    assert not any(store.tmp_root.iterdir())  # the temporary is gone
    store.write_video("v2", np.arange(12, dtype=np.float32).reshape(6, 2), 4, ["time", "c"], {"fps": 2.0})
    assert store.done_videos() == {"v2"}
    np.testing.assert_array_equal(store.read("v2")[...], np.arange(12).reshape(6, 2))
    with pytest.raises(KeyError, match="v1"):
        store.read("v1")


def test_complete_flag_is_written_last(tmp_path):
    store = _store(tmp_path)
    store.write_video("v1", np.zeros((3, 2), np.float32), 2, ["time", "c"])
    with pytest.raises(RuntimeError, match="v2"):
        store.mark_complete(["v1", "v2"])
    assert not store.is_complete()
    store.mark_complete(["v1", "v2"], skipped={"v2": "ValueError: broken"})
    assert store.is_complete() and store.completion()["skipped"] == {"v2": "ValueError: broken"}


def test_crash_leftovers_are_swept_and_params_checked(tmp_path):
    store = _store(tmp_path)
    leftover = store.tmp_root / "v9-deadbeef"
    leftover.mkdir(parents=True)
    ArtifactStore(store.path).begin({"stage": "feat", "params": {"a": 1}})  # a rerun
    assert not leftover.exists()
    with pytest.raises(ValueError, match="other parameters"):
        ArtifactStore(store.path).begin({"stage": "feat", "params": {"a": 2}})


def test_plain_zarr_and_dask_read_it(tmp_path):
    import dask.array as da

    store = _store(tmp_path)
    data = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    store.write_video("vid", data, 16, ["time", "feature"], {"window": 16})
    store.mark_complete(["vid"])
    group = zarr.open_group(str(store.path), mode="r")
    assert group.attrs["params"] == {"a": 1}
    arr = group["vid"]
    assert arr.chunks == (16, 8) and arr.metadata.dimension_names == ("time", "feature")
    np.testing.assert_array_equal(da.from_zarr(str(store.path / "vid")).compute(), data)
    assert "zstd" in json.dumps((store.path / "vid" / "zarr.json").read_text())


def test_inspect_json_and_plots(tmp_path):
    store = _store(tmp_path)
    store.write_video("sim", np.eye(20, dtype=np.float16), 8, ["time", "time2"])
    frames = np.random.default_rng(0).integers(0, 255, size=(5, 16, 16, 3), dtype=np.uint8)
    store.write_video("frames", frames, 2, ["time", "y", "x", "rgb"], {"timestamps": [0, 0.5, 1, 1.5, 2]})
    info = describe_store(store.path)
    assert info["complete"] is False
    assert info["videos"]["sim"] == {"shape": [20, 20], "dtype": "float16", "chunks": [8, 20], "attrs": {},
                                     "complete": True}
    store.mark_complete(["sim", "frames"])
    assert describe_store(store.path)["complete"] is True
    for video in ("sim", "frames"):
        out = plot_video(store.path, video, tmp_path / f"{video}.png")
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 2000
    with pytest.raises(FileNotFoundError):
        describe_store(tmp_path / "missing.zarr")


def test_remove_drops_everything(tmp_path):
    store = _store(tmp_path)
    store.write_video("v1", np.zeros((3, 2), np.float32), 2, ["time", "c"])
    store.mark_complete(["v1"])
    store.write_failure_report("feat", {"v2": "bad"})
    store.remove()
    assert not store.path.exists() and not store.failure_report.exists() and not store.is_complete()


def test_atomic_folder_appears_only_on_success(tmp_path):
    final = tmp_path / "out"
    (tmp_path / ".out.deadbeef.tmp").mkdir()  # left by a crashed run
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_folder(final) as tmp:
            (tmp / "a").write_text("1")
            raise RuntimeError("boom")
    assert not final.exists() and not list(tmp_path.glob(".out.*.tmp"))
    final.mkdir()
    (final / "old").write_text("x")
    with atomic_folder(final) as tmp:
        (tmp / "a").write_text("1")
    assert sorted(p.name for p in final.iterdir()) == ["a"]  # replaced
    with atomic_folder(final, tmp_path / "tmps" / "out-1", keep_existing=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["a"] and not any((tmp_path / "tmps").iterdir())  # kept


def test_atomic_write_text_and_bytes(tmp_path):
    path = tmp_path / "sub" / "f.json"
    atomic_write(path, "text")
    assert path.read_text() == "text"
    atomic_write(path, b"bytes")
    assert path.read_bytes() == b"bytes" and list(path.parent.iterdir()) == [path]


def test_feature_stores_name_the_module_of_their_time_convention(tmp_path):
    # Every feature store's attributes say where its step-to-seconds convention is defined: a module that exists.
    ArtifactStore(tmp_path / "f.zarr").begin({"stage": "features", "params": {}})
    write_features(tmp_path / "f.zarr", "v1", np.ones((3, 2)), TimeGrid(fps=30.0, window=16, stride=4))
    attrs = ArtifactStore(tmp_path / "f.zarr").read("v1").attrs
    module = re.fullmatch(r".*\((\S+)\)", attrs["time_convention"]).group(1)
    assert hasattr(importlib.import_module(module), "TimeGrid"), module
    assert read_features(tmp_path / "f.zarr", "v1")[1] == TimeGrid(fps=30.0, window=16, stride=4)
