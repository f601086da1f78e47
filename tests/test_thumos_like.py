"""The THUMOS14-shaped feature-level benchmark (synthetic/thumos_like.py, `tal-pipeline synth --features`)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tal_pipeline.stages.data.import_features import import_video_features
from tal_pipeline.stages.data.timegrid import TimeGrid, feature_to_seconds, num_windows
from tal_pipeline.storage.annotations import load_annotations
from tal_pipeline.storage.features import read_features
from tal_pipeline.storage.zarr_store import ArtifactStore
from tal_pipeline.synthetic.thumos_like import generate_thumos_like
from tal_pipeline.synthetic.thumos_like_features import class_directions
from tal_pipeline.synthetic.thumos_like_layout import CLASSES, SUBSETS, layout_statistics, sample_layout
from tests.conftest import REPO, SHARED

SEED, WIDTH = 3, 128


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("thumos_like")
    generate_thumos_like(out, videos_train=5, videos_test=3, seed=SEED, width=WIDTH, max_duration=90.0)
    return out


def _step_windows(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) in seconds of each feature step's 16-frame window."""
    centre = feature_to_seconds(np.arange(n_steps), 30.0, 16, 4)
    return centre - 8 / 30, centre + 8 / 30


def test_deterministic_for_a_seed(tmp_path):
    runs = {name: generate_thumos_like(tmp_path / name, videos_train=2, videos_test=1, seed=s, width=64,
                                       max_duration=40.0)
            for name, s in (("a", 5), ("b", 5), ("c", 6))}
    db = {k: json.loads(p.read_text())["database"] for k, p in runs.items()}
    assert db["a"] == db["b"] and db["a"] != db["c"]
    for video in db["a"]:
        a = np.load(tmp_path / "a" / "features" / f"{video}.npy")
        assert np.array_equal(a, np.load(tmp_path / "b" / "features" / f"{video}.npy"))
        assert not np.array_equal(a[:10], np.load(tmp_path / "c" / "features" / f"{video}.npy")[:10])
    # The layout does not depend on the width: the same annotations at another width.
    other = generate_thumos_like(tmp_path / "w", videos_train=2, videos_test=1, seed=5, width=96, max_duration=40.0)
    assert json.loads(other.read_text())["database"].keys() == db["a"].keys()
    assert [v["annotations"] for v in json.loads(other.read_text())["database"].values()] == \
           [v["annotations"] for v in db["a"].values()]


def test_loads_and_imports(bench, tmp_path):
    ann = load_annotations(bench / "annotations.json", labels=CLASSES)
    assert not ann.warnings
    assert sorted(ann.videos["subset"].unique()) == ["test", "validation"]
    assert len(ann.subset("validation").videos) == 5 and len(ann.subset("test").videos) == 3
    assert (ann.videos["fps"] == 30.0).all()
    raw = json.loads((bench / "annotations.json").read_text())["database"]
    for video in ann.videos["video"]:
        seg = ann.segments(video)
        duration = ann.duration(video)
        assert len(seg) >= 1 and seg["label"].isin(CLASSES).all() and seg["label"].nunique() <= 3
        assert (seg["start"] >= 0).all() and (seg["end"] <= duration).all()
        assert (seg["end"] - seg["start"] >= 0.2 - 1e-9).all()
        # Actions, and their warm-ups/cool-downs, do not overlap and stay inside the video.
        spans = [(w[0], c[1]) for w, c in raw[video]["hard_negatives"]]
        assert all(0 <= s < e <= duration + 1e-9 for s, e in spans)
        assert all(e1 <= s2 + 1e-9 for (_, e1), (s2, _) in zip(spans, spans[1:]))
        assert (seg["start"].to_numpy()[1:] >= seg["end"].to_numpy()[:-1]).all()
        feats = np.load(bench / "features" / f"{video}.npy")
        assert feats.dtype == np.float32 and feats.shape == (num_windows(round(duration * 30), 16, 4), WIDTH)
        assert np.isfinite(feats).all()

    store = ArtifactStore(tmp_path / "features.zarr")
    store.begin({"params": {}})
    video = ann.videos["video"].iloc[0]
    fps = dict(zip(ann.videos["video"], ann.videos["fps"]))
    import_video_features(video, source=str(bench / "features"), store_path=str(store.path), fps_by_video=fps,
                          window=16, stride=4, width=WIDTH)
    feats, grid = read_features(store.path, video)
    assert grid == TimeGrid(30.0, 16, 4)
    np.testing.assert_array_equal(feats, np.load(bench / "features" / f"{video}.npy"))
    assert grid.to_seconds(len(feats) - 1) <= ann.duration(video)


def test_flanks_share_appearance_not_motion(bench):
    """Projections on the generator's own directions: warm-up/cool-down steps carry the action's class
    appearance (like the action) but not its class motion; a step straddling the start is a mixture."""
    d = class_directions(SEED, WIDTH)
    db = json.loads((bench / "annotations.json").read_text())["database"]
    proj = {k: {"app": [], "mot": []} for k in ("action", "flank", "background", "straddle")}
    for video, entry in db.items():
        x = np.load(bench / "features" / f"{video}.npy")
        lo, hi = _step_windows(len(x))
        busy = np.zeros(len(x), bool)
        for a, (w, c) in zip(entry["annotations"], entry["hard_negatives"]):
            k = CLASSES.index(a["label"])
            s, e = a["segment"]
            busy |= (hi > w[0]) & (lo < c[1])
            inside = (lo >= s) & (hi <= e)
            flank = ((lo >= w[0]) & (hi <= w[1])) | ((lo >= c[0]) & (hi <= c[1]))
            share = (np.minimum(hi, e) - np.maximum(lo, s)).clip(0) / (hi - lo)
            straddle = (lo < s) & (share > 0.3) & (share < 0.7)
            for name, mask in (("action", inside), ("flank", flank), ("straddle", straddle)):
                proj[name]["app"] += list(x[mask] @ d.appearance[k])
                proj[name]["mot"] += list(x[mask] @ d.motion_specific[k])
        # Background steps, on the directions of the video's classes.
        for label in entry["classes"]:
            k = CLASSES.index(label)
            proj["background"]["app"] += list(x[~busy] @ d.appearance[k])
            proj["background"]["mot"] += list(x[~busy] @ d.motion_specific[k])
    m = {name: {key: float(np.mean(v)) for key, v in p.items()} for name, p in proj.items()}
    assert min(len(proj[k]["app"]) for k in proj) >= 10, {k: len(v["app"]) for k, v in proj.items()}
    # Same appearance in action and flanks, clearly above the background's.
    assert abs(m["flank"]["app"] - m["action"]["app"]) < 0.1 * m["action"]["app"]
    assert m["action"]["app"] - m["background"]["app"] > 0.5
    # Class motion only in the action.
    assert m["action"]["mot"] > 0.4
    assert abs(m["flank"]["mot"]) < 0.1 and abs(m["background"]["mot"]) < 0.1
    assert m["flank"]["mot"] + 0.05 < m["straddle"]["mot"] < m["action"]["mot"]
    # Not trivial per step: the action's and the flanks' class-motion projections overlap.
    act, flank = np.array(proj["action"]["mot"]), np.array(proj["flank"]["mot"])
    assert np.mean(flank > np.percentile(act, 10)) > 0.02
    # In cosine terms: the mean flank step is closer to the mean action step than to the mean background step.
    cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
    a_vec = np.array([m["action"]["app"], m["action"]["mot"]])
    f_vec = np.array([m["flank"]["app"], m["flank"]["mot"]])
    assert cos(a_vec, f_vec) > 0.85 and cos(a_vec - f_vec, np.array([0.0, 1.0])) > 0.95


def test_statistics_match_thumos14():
    stats_md = SHARED / "thumos14" / "STATS.md"
    stats_json = SHARED / "thumos14" / "stats.json"
    if not (stats_md.is_file() and stats_json.is_file()):
        pytest.skip(f"THUMOS14 statistics not found at {stats_md} (a user's clone has no ../shared; CI has it)")
    real = json.loads(stats_json.read_text())
    # Uncapped durations (THUMOS14's longest video is ~1700 s); layouts only, no features.
    layouts = [sample_layout(seed, subset, i, max_duration=1700.0)
               for seed in range(2) for subset, n in zip(SUBSETS, (200, 212)) for i in range(n)]
    ours = layout_statistics(layouts)

    def ref(*keys):
        return np.mean([real[s][keys[0]][keys[1]] for s in ("validation", "test")])

    def near(got, want, rel):
        assert abs(got - want) <= rel * want, (got, want)

    near(ours["video_duration_s"]["mean"], ref("video_duration_s", "mean"), 0.2)
    near(ours["video_duration_s"]["median"], ref("video_duration_s", "median"), 0.2)
    near(ours["actions_per_video"]["mean"], ref("actions_per_video", "mean"), 0.3)
    near(ours["actions_per_video"]["median"], ref("actions_per_video", "median"), 0.35)
    near(ours["action_len_s"]["mean"], ref("action_len_s", "mean"), 0.2)
    near(ours["action_len_s"]["median"], ref("action_len_s", "median"), 0.2)
    near(ours["foreground_fraction"]["mean"], ref("foreground_fraction", "mean"), 0.2)
    near(ours["foreground_fraction"]["median"], ref("foreground_fraction", "median"), 0.3)
    assert ours["action_len_s"]["min"] >= min(real[s]["action_len_s"]["min"] for s in real) - 1e-9
    assert ours["actions_per_video"]["min"] >= 1
    assert ours["classes_per_video_max"] <= max(real[s]["classes_per_video_max"] for s in real)
    assert ours["videos_with_1_2_3_classes"][0] > 0.7 * ours["videos"]
    assert ours["classes_present"] == len(CLASSES) == real["validation"]["classes_present"]
    assert ours["video_duration_s"]["min"] >= 8.0


def test_cli_writes_what_it_says(tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "synth", "--features", str(out),
                             "--videos-train", "3", "--videos-test", "2"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert str(out / "annotations.json") in result.stdout
    files = sorted(p.stem for p in (out / "features").glob("*.npy"))
    db = json.loads((out / "annotations.json").read_text())["database"]
    assert files == sorted(db) and len(files) == 5
    assert sorted(v["subset"] for v in db.values()) == ["test"] * 2 + ["validation"] * 3
    assert all(10.0 <= v["duration"] <= 240.0 and v["fps"] == 30.0 for v in db.values())
    assert np.load(out / "features" / f"{files[0]}.npy").shape[1] == 256
    readme = (out / "README.txt").read_text()
    assert "luigi --module pipeline FullRun" in readme
    assert f"--dataset-features {out.resolve() / 'features'}" in readme
    assert "--dataset-train-subset validation --dataset-test-subset test" in readme


def test_cli_arguments(tmp_path, capsys):
    from pipeline.cli import build_parser, main

    args = build_parser().parse_args(["synth", "--out", str(tmp_path / "v")])  # the video mode is unchanged
    assert args.out == str(tmp_path / "v") and args.features is None and args.videos == 16 and args.size == 128
    assert main(["synth", "--features", str(tmp_path / "f"), "--width", "10"]) == 2
    assert "--width must be at least 64" in capsys.readouterr().err
    assert main(["synth", "--features", str(tmp_path / "f"), "--max-duration", "5"]) == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth", "--out", "a", "--features", "b"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth"])
