"""Feature grids that cannot be wrong silently (issue 26): each dataset preset carries the grid of the public
features it is made for and the dataset's subset names, and ImportFeatures checks every video's feature span
(steps x stride / fps) against its annotated duration. Fabricated features in the public layouts: THUMOS14 I3D
(one (T, 2048) .npy per video, window 16, stride 4 at the video's 30 fps) and ActivityNet TSP (one (T, 512) .npy
per video, 15 fps, window 16, stride 16; ActivityNet annotations carry no fps)."""
import json

import numpy as np
import pytest
from luigi.cmdline_parser import CmdlineParser

from tal_pipeline.stages.data.feature_span import check_feature_span
from tal_pipeline.stages.data.import_features import import_video_features
from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.stages.presets import ANET_TSP, PRESETS, THUMOS14_I3D
from tal_pipeline.storage.features import read_features
from tal_pipeline.storage.zarr_store import ArtifactStore
from tests.conftest import run_luigi

THUMOS = {"video_validation_0000051": 31.2, "video_test_0000004": 24.0}  # durations, s (30 fps)
ANET = {"v_QOlSCBRmfWY": 82.73, "v_ehGHCYKzyZ8": 61.72, "v_nwznKOuZM7w": 30.1}


def _thumos_layout(folder):
    """(T, 2048) per video, T = the number of 16-frame windows every 4 frames of a 30 fps video."""
    rng = np.random.default_rng(0)
    (folder / "feats").mkdir(parents=True)
    for video, seconds in THUMOS.items():
        steps = (round(seconds * 30) - 16) // 4 + 1
        np.save(folder / "feats" / f"{video}.npy", rng.normal(size=(steps, 2048)).astype(np.float32))
    db = {v: {"subset": "Validation" if "validation" in v else "Test", "duration": d, "fps": 30.0,
              "annotations": [{"segment": [2.0, 5.0], "label": "CliffDiving"}]} for v, d in THUMOS.items()}
    (folder / "thumos14.json").write_text(json.dumps({"database": db}))
    return folder / "feats", folder / "thumos14.json"


def _anet_layout(folder, fps=False):
    """(T, 512) per video, T = duration x 15 / 16 (TSP features, not resized); ActivityNet-style annotations
    (subsets training / validation, no fps unless asked)."""
    rng = np.random.default_rng(1)
    (folder / "feats").mkdir(parents=True)
    for video, seconds in ANET.items():
        np.save(folder / "feats" / f"{video}.npy", rng.normal(size=(round(seconds * 15 / 16), 512)).astype(np.float32))
    subsets = ["training", "training", "validation"]
    db = {v: {"subset": s, "duration": d, "annotations": [{"segment": [3.0, 20.0], "label": "Long jump"}],
              **({"fps": 15.0} if fps else {})} for (v, d), s in zip(ANET.items(), subsets)}
    (folder / "anet.json").write_text(json.dumps({"version": "VERSION 1.3", "database": db}))
    return folder / "feats", folder / "anet.json"


def test_presets_carry_the_public_grids_and_subsets():
    assert PRESETS["thumos14"].features == THUMOS14_I3D and (THUMOS14_I3D.window, THUMOS14_I3D.stride) == (16, 4)
    assert THUMOS14_I3D.fps is None  # each video's own
    assert PRESETS["anet"].features == ANET_TSP and (ANET_TSP.window, ANET_TSP.stride, ANET_TSP.fps) == (16, 16, 15.0)
    assert PRESETS["anet"].subsets == ("training", "validation") and PRESETS["thumos14"].subsets == ("train", "test")


def _import(folder, video, **grid):
    store = ArtifactStore(folder / f"features-{len(list(folder.glob('features-*')))}.zarr")
    store.begin({"params": {}})
    import_video_features(video, source=str(folder / "feats"), store_path=str(store.path), **grid)
    return store


def test_thumos14_features_on_the_activitynet_grid_fail_naming_the_grid_that_fits(tmp_path):
    _thumos_layout(tmp_path)
    video = "video_validation_0000051"
    store = _import(tmp_path, video, fps_by_video={video: 30.0}, window=16, stride=4, durations=THUMOS,
                    video_fps={video: 30.0})
    assert store.read(video).shape == (231, 2048)  # 231 x 4 / 30 = 30.8 s of 31.2: within the tolerance
    with pytest.raises(ValueError) as err:
        _import(tmp_path, video, fps_by_video={video: 15.0}, window=16, stride=16, durations=THUMOS,
                video_fps={video: 30.0})
    msg = str(err.value)
    assert f"video {video!r}" in msg and "231 feature steps span 246.4 s" in msg and "duration of 31.2 s" in msg
    assert "THUMOS14 I3D (window 16, stride 4, each video's fps) grid would fit (30.8 s)" in msg
    assert "--dataset-preset thumos14" in msg


def test_activitynet_features_on_the_default_stride_fail_naming_the_grid_that_fits(tmp_path):
    _anet_layout(tmp_path)
    video = "v_QOlSCBRmfWY"  # 78 steps: 83.2 s at stride 16, 20.8 s at stride 4
    with pytest.raises(ValueError) as err:
        _import(tmp_path, video, fps_by_video={video: 15.0}, window=16, stride=4, durations=ANET)
    msg = str(err.value)
    assert f"video {video!r}" in msg and "78 feature steps span 20.8 s" in msg and "duration of 82.7 s" in msg
    assert "ActivityNet TSP (window 16, stride 16, 15 fps) grid would fit (83.2 s)" in msg
    assert "--dataset-preset anet" in msg
    # no preset's grid fits: the stride that would
    with pytest.raises(ValueError, match=r"no preset's grid fits; a stride of 63\.63 frames at 15 fps would"):
        check_feature_span(video, 78, 16, 4, 15.0, 330.9)
    check_feature_span(video, 78, 16, 16, 15.0, float("nan"))  # duration unknown: nothing to check


def _paths(args):
    from pipeline.data_tasks import ImportFeatures
    from pipeline.dataset import current

    with CmdlineParser.global_instance(["ImportFeatures", "--no-lock", *args]):
        spec = current()
        grid = ImportFeatures().spec()
        return ImportFeatures().output().path, (spec.train_subset, spec.test_subset), (grid.window, grid.stride,
                                                                                        grid.fps)


def test_the_preset_resolves_grid_and_subsets_and_given_values_win(tmp_path):
    feats, ann = _anet_layout(tmp_path)
    base = ["--dataset-features", str(feats), "--dataset-annotations", str(ann), "--paths-workdir", str(tmp_path)]
    thumos = _paths(base)
    assert thumos[1:] == (("train", "test"), (16, 4, 0.0))
    # thumos14's resolved grid hashes as the values given explicitly (the paths of before presets)
    assert _paths([*base, "--ImportFeatures-window", "16", "--ImportFeatures-stride", "4",
                   "--ImportFeatures-fps", "0"])[0] == thumos[0]
    anet = _paths([*base, "--dataset-preset", "anet"])
    assert anet[1:] == (("training", "validation"), (16, 16, 15.0)) and anet[0] != thumos[0]
    given = _paths([*base, "--dataset-preset", "anet", "--ImportFeatures-stride", "4", "--dataset-test-subset",
                    "testing"])
    assert given[1:] == (("training", "testing"), (16, 4, 15.0))


def test_activitynet_features_import_with_the_preset_alone_and_fail_on_the_wrong_stride(tmp_path):
    feats, ann = _anet_layout(tmp_path, fps=False)
    workdir = tmp_path / "runs"
    args = ["ImportFeatures", "--dataset-preset", "anet", "--dataset-features", str(feats),
            "--dataset-annotations", str(ann), "--paths-workdir", str(workdir)]
    done = run_luigi(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    [path] = workdir.glob("features-*.zarr")
    assert ArtifactStore(path).done_videos() == set(ANET)  # training and validation, no subset flag
    features, grid = read_features(path, "v_ehGHCYKzyZ8")
    assert features.shape == (58, 512) and grid == TimeGrid(15.0, 16, 16)
    # the case: the TSP features on stride 4 import no more, and the failure report says why
    wrong = run_luigi([*args, "--ImportFeatures-stride", "4", "--paths-workdir", str(tmp_path / "wrong")], tmp_path)
    assert wrong.returncode != 0
    [bad] = (tmp_path / "wrong").glob("features-*.zarr")
    failures = json.loads(ArtifactStore(bad).failure_report.read_text())["failures"]
    assert set(failures) == set(ANET) and not ArtifactStore(bad).is_complete()
    assert "ActivityNet TSP (window 16, stride 16, 15 fps) grid would fit" in failures["v_QOlSCBRmfWY"]


def test_the_activitynet_shaped_benchmark_imports_with_the_preset_alone(tmp_path):
    """What `tal-pipeline synth --features DIR --preset anet` writes, imported as its README says: --dataset-preset
    anet and no grid or subset flag."""
    from tal_pipeline.synthetic.anet_like import generate_anet_like

    ann = generate_anet_like(tmp_path / "anet", videos=7, seed=3, width=16)
    readme = (tmp_path / "anet" / "README.txt").read_text()
    assert "FullRun --dataset-preset anet --dataset-features" in readme and "--ImportFeatures" not in readme
    workdir = tmp_path / "runs"
    done = run_luigi(["ImportFeatures", "--dataset-preset", "anet", "--dataset-features", str(tmp_path / "anet" /
                      "features"), "--dataset-annotations", str(ann), "--paths-workdir", str(workdir)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    db = json.loads(ann.read_text())["database"]
    [path] = workdir.glob("features-*.zarr")
    assert ArtifactStore(path).done_videos() == {v for v, d in db.items() if d["subset"] in ("training", "validation")}
    video = next(v for v, d in db.items() if d["subset"] == "training")
    assert read_features(path, video)[1] == TimeGrid(15.0, 16, 16)
