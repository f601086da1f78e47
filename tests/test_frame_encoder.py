"""The frame encoder Phi (`--TrainEncoder-options '{"encoder": "cnn"}'`) in the pipeline: one sampled frame per
feature step, the frame at the I3D window's centre time (known answers from frames that carry their own index in
their pixels); a real luigi run TrainEncoder(cnn) -> SimilarityMatrices -> TSCProposals on a tiny synthetic
dataset whose S is on the feature grid, computed from the right frames with the right (cross-fitted) encoder; and
the clear refusal on a dataset of features without videos."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from luigi.cmdline_parser import CmdlineParser

from tal_pipeline.stages.data.frame_steps import load_step_frames, read_step_frames, step_frame_indices
from tal_pipeline.stages.data.timegrid import TimeGrid, num_windows
from tal_pipeline.storage.zarr_store import ArtifactStore
from tests.conftest import dataset_args, run_luigi

CNN = json.dumps({"encoder": "cnn", "width": 8, "hidden": 16, "dim": 8})


def _indexed_frames(store_path, video: str, count: int, fps: float, origin: float = 0.0, size: int = 4) -> None:
    """A SampleFrames-like store whose frame k holds k in its pixels (red = k % 256, green = k // 256)."""
    k = np.arange(count)
    frames = np.zeros((count, size, size, 3), np.uint8)
    frames[..., 0], frames[..., 1] = (k % 256)[:, None, None], (k // 256)[:, None, None]
    store = ArtifactStore(store_path)
    store.begin({"params": {}})
    times = [round(origin + i / fps, 6) for i in range(count)]  # as SampleFrames records them
    store.write_video(video, frames, 64, ["time", "y", "x", "rgb"], {"fps": fps, "timestamps": times})


def _index(frames: np.ndarray) -> np.ndarray:
    """The frame index each (N, H, W, 3) frame carries, checked constant over its pixels."""
    k = frames[..., 0].astype(np.int64) + 256 * frames[..., 1].astype(np.int64)  # (N, H, W)
    assert (k == k[:, :1, :1]).all()
    return k[:, 0, 0]


@pytest.mark.parametrize("grid, expected", [
    (TimeGrid(8.0, 16, 4), lambda i: 4 * i + 8),    # the default: centre (4i + 8) / 8 s is frame 4i + 8's time
    (TimeGrid(8.0, 15, 3), lambda i: 3 * i + 7),    # odd window: the middle frame, 3i + 7 of [3i, 3i + 15)
    (TimeGrid(8.0, 16, 16), lambda i: 16 * i + 8),  # windows that do not overlap
])
def test_each_step_gets_the_frame_at_its_window_centre(tmp_path, grid, expected):
    count = 300  # > 256: the index needs both channels
    _indexed_frames(tmp_path / "frames.zarr", "v", count, 8.0)
    steps = num_windows(count, grid.window, grid.stride)
    got = _index(read_step_frames(tmp_path / "frames.zarr", "v", grid, steps))
    assert got.tolist() == [expected(i) for i in range(steps)]
    # and by the definition: the last sampled frame whose time is <= the window's centre time
    centres = grid.to_seconds(np.arange(steps))
    assert (got / 8.0 <= centres + 1e-9).all() and ((got + 1) / 8.0 > centres).all()


def test_features_on_another_clock_map_by_time(tmp_path):
    """Imported features on a 10 fps grid over frames sampled at 8 fps from 0.3 s: centres (4i + 8) / 10 s."""
    _indexed_frames(tmp_path / "frames.zarr", "v", 100, 8.0, origin=0.3)
    got = _index(read_step_frames(tmp_path / "frames.zarr", "v", TimeGrid(10.0, 16, 4), 6))
    # centre 0.8, 1.2, 1.6, 2.0, 2.4, 2.8 s; frame k is on screen from 0.3 + k/8: 4 (0.8), 7 (1.175), 10 (1.55),
    # 13 (1.925), 16 (2.3; 2.4 is before 17's 2.425), 20 (2.8 exactly, despite the 6-decimal timestamps)
    assert got.tolist() == [4, 7, 10, 13, 16, 20]


def test_a_grid_the_frames_do_not_cover_is_refused():
    times = np.arange(20) / 8.0  # 20 frames: on screen until 2.5 s
    grid = TimeGrid(8.0, 16, 4)
    assert step_frame_indices(times, grid, 2, 1 / 8.0).tolist() == [8, 12]  # centres 1.0 and 1.5 s
    with pytest.raises(ValueError, match=r"'v': feature step 3 is centred at 2.500 s, outside the sampled frames"):
        step_frame_indices(times, grid, 4, 1 / 8.0, video="v")
    with pytest.raises(ValueError, match="outside the sampled frames"):
        step_frame_indices(times + 1.1, grid, 1, 1 / 8.0)  # the first centre (1.0 s) is before the first frame


@pytest.fixture(scope="module")
def cnn_run(tiny_synthetic, tmp_path_factory) -> dict:
    """The chain on the tiny synthetic videos, with features imported alongside them (a dataset may give both): the
    frames are sampled from the videos as always; features stand in for I3D's (which would take most of the run)
    on the same grid, 8 fps, windows of 16 frames every 4, one fewer step than the frames allow."""
    work = tmp_path_factory.mktemp("frame_encoder")
    ann = json.loads((tiny_synthetic / "annotations.json").read_text())["database"]
    source = work / "features"
    source.mkdir()
    rng = np.random.default_rng(0)
    for video, entry in ann.items():
        steps = num_windows(int(entry["duration"] * 8), 16, 4) - 1
        np.save(source / f"{video}.npy", rng.normal(size=(steps, 8)).astype(np.float32))
    result = run_luigi(["TSCProposals", "--workers", "1", "--TrainEncoder-options", CNN, "--TrainEncoder-epochs", "1",
                        "--TSCProposals-ms", "[2,4]", "--TSCProposals-rates", "[]", "--SampleFrames-size", "32",
                        "--dataset-features", str(source), "--ImportFeatures-fps", "8",
                        *dataset_args(tiny_synthetic, work / "runs")], work)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"workdir": work / "runs", "data": tiny_synthetic}


def test_cnn_encoder_chain_gives_s_on_the_feature_grid(cnn_run):
    from tal_pipeline.stages.bapg.similarity import embed_with_checkpoint, similarity_matrix

    workdir = cnn_run["workdir"]
    [features], [frames] = workdir.glob("features-*.zarr"), workdir.glob("frames-*.zarr")
    [similarity], [proposals] = workdir.glob("similarity-*.zarr"), workdir.glob("proposals-*.zarr")
    encoders = {json.loads((p / "config.json").read_text())["fold"]: p for p in workdir.glob("encoder-*")}
    assert sorted(encoders) == [-1, 0, 1]  # the full encoder and the two cross-fitting folds
    configs = {f: json.loads((p / "config.json").read_text()) for f, p in encoders.items()}
    assert all(c["encoder"] == "cnn" and c["in_shape"] == [32, 32, 3] for c in configs.values())
    separation = json.loads((encoders[-1] / "separation.json").read_text())
    assert {"features", "before", "after"} <= set(separation) and np.isfinite(separation["after"]["gap"])
    assert json.loads((proposals / "boundary_accuracy.json").read_text())
    ann = json.loads((cnn_run["data"] / "annotations.json").read_text())["database"]
    train = sorted(v for v, e in ann.items() if e["subset"] == "train")
    store = ArtifactStore(similarity)
    assert store.is_complete() and store.videos() == sorted(ann)
    for video in sorted(ann):
        steps = ArtifactStore(features).read(video).shape[0]
        S = store.read(video)
        assert S.shape == (steps, steps)  # the feature grid, not the frames' (4x as many)
        # which encoder embedded it: a training video its fold's (trained without it), a test video the full one
        fold = train.index(video) % 2 if video in train else -1
        assert video not in configs[fold]["train_videos"] and (fold == -1 or video in configs[-1]["train_videos"])
        x, _ = load_step_frames(frames, features, [video])
        want = similarity_matrix(embed_with_checkpoint(encoders[fold], x[video]))
        np.testing.assert_array_equal(np.asarray(S[...]), want)


def test_frame_encoder_is_refused_without_videos(tmp_path):
    import pipeline  # noqa: F401  (registers the tasks)
    from pipeline.bapg_tasks import SimilarityMatrices, TrainEncoder

    args = ["SimilarityMatrices", "--dataset-features", str(tmp_path / "f"), "--dataset-annotations",
            str(tmp_path / "a.json"), "--paths-workdir", str(tmp_path), "--TrainEncoder-options", CNN]
    message = r"encoder.*cnn.*only precomputed features \(--dataset-features\) and no videos"
    with CmdlineParser.global_instance(args):
        with pytest.raises(ValueError, match=message):
            TrainEncoder().requires()
        with pytest.raises(ValueError, match=message):
            SimilarityMatrices().requires()
        # the feature encoder runs
        assert TrainEncoder(options={}).requires()["features"].get_task_family() == "ImportFeatures"


def test_a_frame_encoder_given_features_says_it_embeds_frames():
    """Where features reach a frame encoder (e.g. single-video inference, which embeds features), the error says why."""
    from tal_pipeline.stages.bapg.encoder import embed, train_encoder

    frames = {"f": np.zeros((6, 16, 16, 3), np.uint8)}
    actions = pd.DataFrame({"video": ["f"], "label": ["A"], "start": [1.0], "end": [2.0]})
    state, config, _ = train_encoder(frames, actions, TimeGrid(1.0, 1, 1), {"encoder": "cnn", "epochs": 0, "width": 8},
                                     device="cpu", progress=False)
    assert embed(state, config, frames["f"], device="cpu").shape == (6, 128)
    with pytest.raises(ValueError, match=r"shape \(6, 1024\) \(the cnn encoder embeds one sampled frame per feature"):
        embed(state, config, np.zeros((6, 1024), np.float32), device="cpu")
