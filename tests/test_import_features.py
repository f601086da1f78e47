"""ImportFeatures through real luigi runs: .npy folders and HDF5, validation, failure report."""
import json

import h5py
import numpy as np
import pytest

from tal_pipeline.stages.data.import_features import import_video_features, read_source
from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.storage.features import read_features
from tal_pipeline.storage.zarr_store import ArtifactStore
from tests.conftest import run_luigi


def _annotations(folder, videos):
    db = {v: {"subset": "train" if i % 2 == 0 else "test", "duration": 5.0, "fps": 25.0,
              "annotations": [{"segment": [2.0, 5.0], "label": "A"}]} for i, v in enumerate(videos)}
    path = folder / "ann.json"
    path.write_text(json.dumps({"database": db}))
    return path


def test_npy_folder_import_and_validation(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "feats"
    src.mkdir()
    data = {f"v{i}": rng.normal(size=(30 + i, 8)).astype(np.float64) for i in range(4)}
    for v, x in data.items():
        np.save(src / f"{v}.npy", x)
    bad_nan = data["v2"].copy()
    bad_nan[3, 1] = np.nan
    np.save(src / "v2.npy", bad_nan)
    np.save(src / "v3.npy", rng.normal(size=(10, 6)))  # wrong width
    ann = _annotations(tmp_path, ["v0", "v1", "v2", "v3", "v4"])  # v4 has no file
    workdir = tmp_path / "runs"
    args = ["ImportFeatures", "--dataset-features", str(src), "--dataset-annotations", str(ann),
            "--paths-workdir", str(workdir)]
    result = run_luigi(args, tmp_path)
    assert result.returncode == 30
    [path] = workdir.glob("features-*.zarr")
    store = ArtifactStore(path)
    assert store.done_videos() == {"v0", "v1"} and not store.is_complete()
    failures = json.loads(store.failure_report.read_text())["failures"]
    assert "NaN" in failures["v2"] and "6 wide, expected 8" in failures["v3"] and "v4.npy" in failures["v4"]
    features, grid = read_features(path, "v1")
    assert features.dtype == np.float32 and features.shape == (31, 8)
    np.testing.assert_allclose(features, data["v1"], rtol=1e-6)
    assert grid == TimeGrid(25.0, 16, 4)
    assert grid.to_seconds(0) == pytest.approx(8 / 25)


def test_hdf5_source(tmp_path):
    h5 = tmp_path / "feats.h5"
    with h5py.File(h5, "w") as f:
        f["a"] = np.ones((5, 3), np.float32)
        f["b"] = np.ones((5,), np.float32)
    store = ArtifactStore(tmp_path / "f.zarr")
    store.begin({"params": {}})
    import_video_features("a", source=str(h5), store_path=str(store.path), fps_by_video={"a": 30.0},
                          window=16, stride=4, width=3)
    assert store.read("a").shape == (5, 3)
    with pytest.raises(ValueError, match=r"video 'b'.*shape \(5,\)"):
        import_video_features("b", source=str(h5), store_path=str(store.path), fps_by_video={"b": 30.0},
                              window=16, stride=4)
    with pytest.raises(FileNotFoundError, match="no dataset 'c'"):
        read_source(h5, "c")


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a plain numeric"):
        read_source(tmp_path, "evil")
