"""The ActivityNet-shaped feature benchmark (synthetic/anet_like.py, `tal-pipeline synth --features --preset anet`):
its statistics, its time grid and import, determinism for a seed, the command; and the THUMOS14-shaped benchmark's
bytes kept by the shared renderer."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tal_pipeline.stages.data.import_features import import_video_features
from tal_pipeline.stages.data.timegrid import TimeGrid, feature_to_seconds, num_windows
from tal_pipeline.storage.annotations import load_annotations
from tal_pipeline.storage.features import read_features
from tal_pipeline.storage.zarr_store import ArtifactStore
from tal_pipeline.synthetic.anet_like import anet_class_directions, feature_params, generate_anet_like
from tal_pipeline.synthetic.anet_like_layout import CLASSES, AnetLikeParams, subset_counts
from tal_pipeline.synthetic.thumos_like import generate_thumos_like

N, WIDTH = 400, 16  # 201 training videos: every one of the 200 classes is in the training subset


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("anet_like")
    generate_anet_like(out, videos=N, seed=4, width=WIDTH)
    return out


def test_statistics_are_activitynet_shaped(bench):
    payload = json.loads((bench / "annotations.json").read_text())
    assert payload["taxonomy"] == CLASSES and len(set(CLASSES)) == 200
    ann = load_annotations(bench / "annotations.json", labels=CLASSES)
    assert not ann.warnings
    assert ann.subset("training").actions["label"].nunique() == 200
    counts = ann.videos["subset"].value_counts().to_dict()
    assert counts == subset_counts(N) == payload["subsets"]
    assert counts["training"] / N == pytest.approx(0.50, abs=0.01)
    assert counts["validation"] / N == pytest.approx(0.25, abs=0.01)
    assert counts["testing"] / N == pytest.approx(0.25, abs=0.01)
    per_video = ann.actions.groupby("video").size().reindex(ann.videos["video"], fill_value=0)
    assert set(per_video) == {1, 2} and 0.2 < (per_video == 2).mean() < 0.4  # mostly one
    assert (ann.actions.groupby("video")["label"].nunique() == 1).all()  # one class per video
    durations = ann.videos.set_index("video")["duration"]
    assert durations.between(10.0, 600.0).all()
    assert 85 < durations.median() < 115 and 100 < durations.mean() < 135  # ActivityNet 1.3: ~117 s mean
    covered = (ann.actions["end"] - ann.actions["start"]).groupby(ann.actions["video"]).sum() / durations
    assert covered.between(0.1, 0.95).all() and covered.mean() == pytest.approx(0.5, abs=0.05)
    for entry in payload["database"].values():
        spans = [(w[0], c[1]) for w, c in entry["hard_negatives"]]
        assert all(0 <= s < e <= entry["duration"] + 1e-9 for s, e in spans)
        assert all(e1 <= s2 + 1e-9 for (_, e1), (s2, _) in zip(spans, spans[1:]))  # no overlap
        assert not any(a["segment"][0] - 0.3 < c < a["segment"][1] + 0.3 for c in entry["scene_cuts"]
                       for a in entry["annotations"])  # scene cuts in the background only
    assert np.mean([len(e["scene_cuts"]) for e in payload["database"].values()]) > 1


def test_features_on_the_grid_import_and_carry_the_action(bench, tmp_path):
    ann = load_annotations(bench / "annotations.json", labels=CLASSES)
    directions = anet_class_directions(4, WIDTH, feature_params(AnetLikeParams()))
    inside_minus_outside = []
    for video in ann.videos["video"][:40]:
        feats = np.load(bench / "features" / f"{video}.npy")
        assert feats.dtype == np.float32 and np.isfinite(feats).all()
        assert feats.shape == (num_windows(round(ann.duration(video) * 15), 16, 16), WIDTH)
        seg = ann.segments(video)
        centres = feature_to_seconds(np.arange(len(feats)), 15.0, 16, 16)
        inside = ((centres[:, None] > seg["start"].to_numpy()) & (centres[:, None] < seg["end"].to_numpy())).any(1)
        if inside.any() and (~inside).any():
            motion = feats @ directions.motion[CLASSES.index(seg["label"].iloc[0])]
            inside_minus_outside.append(motion[inside].mean() - motion[~inside].mean())
    assert np.mean(inside_minus_outside) > 0.4  # the action's motion is there, and only there

    video = ann.videos["video"].iloc[0]
    store = ArtifactStore(tmp_path / "features.zarr")
    store.begin({"params": {}})
    import_video_features(video, source=str(bench / "features"), store_path=str(store.path),
                          fps_by_video={video: ann.videos["fps"].iloc[0]}, window=16, stride=16, width=WIDTH)
    feats, grid = read_features(store.path, video)
    assert grid == TimeGrid(15.0, 16, 16)
    np.testing.assert_array_equal(feats, np.load(bench / "features" / f"{video}.npy"))


def _digest(folder: Path) -> str:
    h = hashlib.sha256(json.dumps(json.loads((folder / "annotations.json").read_text())["database"]).encode())
    for f in sorted((folder / "features").glob("*.npy")):
        h.update(f.read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path):
    runs = {name: generate_anet_like(tmp_path / name, videos=6, seed=s, width=WIDTH).parent
            for name, s in (("a", 1), ("b", 1), ("c", 2))}
    assert _digest(runs["a"]) == _digest(runs["b"]) != _digest(runs["c"])
    assert not list((runs["a"] / "features").glob(".*"))  # no temporaries left by the atomic writes


def test_thumos_like_output_is_unchanged(tmp_path):
    # Recorded from the THUMOS14-shaped generator before its renderer took other grids (BenchmarkShape): the
    # annotations byte for byte, the features to 4 decimals (a BLAS may differ in the last bits of the QR).
    generate_thumos_like(tmp_path, videos_train=3, videos_test=2, seed=5, width=64, max_duration=60)
    assert hashlib.sha256((tmp_path / "annotations.json").read_bytes()).hexdigest() == \
        "752585a4c20a20d33dc49f4ab74bc9f00923d2bbe79c1bd8b5bd7e263064e94c"
    h = hashlib.sha256()
    for f in sorted((tmp_path / "features").glob("*.npy")):
        h.update(np.round(np.load(f), 4).tobytes())
    assert h.hexdigest() == "e7646027ca1780e6ebf715dd6f53743a2289f9b38270ad5fd3acaad6a1e3ee7c"


def test_command(tmp_path, capsys):
    from pipeline.cli import main

    out = tmp_path / "anet"
    assert main(["synth", "--features", str(out), "--preset", "anet", "--videos", "7", "--width", "16"]) == 0
    assert str(out / "annotations.json") in capsys.readouterr().out
    db = json.loads((out / "annotations.json").read_text())["database"]
    assert sorted(p.stem for p in (out / "features").glob("*.npy")) == sorted(db)
    assert sorted(v["subset"] for v in db.values()) == ["testing"] + ["training"] * 4 + ["validation"] * 2
    assert np.load(next((out / "features").glob("*.npy"))).shape[1] == 16
    readme = (out / "README.txt").read_text()
    assert "FullRun --dataset-preset anet" in readme
    # the preset carries the TSP grid and ActivityNet's subsets: the command gives neither
    assert "--dataset-train-subset" not in readme and "--ImportFeatures-stride" not in readme
    for argv, words in ((["--preset", "anet", "--videos-train", "3"], "--videos-train"),
                        (["--preset", "anet", "--width", "8"], "at least 16"),
                        (["--preset", "anet", "--videos", "2"], "at least 3"),
                        (["--videos", "5"], "--videos-train")):
        assert main(["synth", "--features", str(tmp_path / "bad"), *argv]) == 2
        assert words in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "v"), "--preset", "anet"]) == 2
    assert "--features" in capsys.readouterr().err
