"""A real luigi run with --dataset-preset anet on imported synthetic features: ImportFeatures -> TrainDetector
(class-agnostic, inputs resized to 192 steps) -> Detect (Soft-NMS 0.75, voting, 100 per video) and ClassifyVideos
-> FuseVideoClasses (top-2 classes) -> Evaluate at tIoU 0.5:0.05:0.95."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tal_pipeline.stages.presets import ANET_TIOUS
from tests.conftest import run_luigi
from tests.synthetic_features import synthetic_feature_dataset


def _dataset(folder: Path) -> tuple[Path, Path, list[str]]:
    feats, ann, labels, grid, durations = synthetic_feature_dataset(num_videos=10, channels=32, num_classes=3,
                                                                    min_len=60, max_len=120, seed=4)
    src = folder / "features"
    src.mkdir()
    db = {}
    for i, (video, x) in enumerate(sorted(feats.items())):
        np.save(src / f"{video}.npy", x)
        rows = ann[ann["video"] == video]
        # ActivityNet's subset names: the preset's, so no subset flag is given
        db[video] = {"subset": "validation" if i % 3 == 2 else "training", "duration": durations[video],
                     "fps": grid.fps,
                     "annotations": [{"segment": [r.start, r.end], "label": r.label} for r in rows.itertuples()]}
    path = folder / "annotations.json"
    path.write_text(json.dumps({"database": db}))
    return src, path, labels


def test_anet_preset_runs_through_to_evaluation(tmp_path):
    src, annotations, labels = _dataset(tmp_path)
    workdir = tmp_path / "runs"
    args = ["Evaluate", "--dataset-features", str(src), "--dataset-annotations", str(annotations),
            "--dataset-preset", "anet", "--paths-workdir", str(workdir), "--ImportFeatures-window", "4",
            "--ImportFeatures-stride", "2", "--ImportFeatures-fps", "0", "--TrainDetector-epochs", "3",
            "--ClassifyVideos-settings", '{"epochs": 100}']
    result = run_luigi(args, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    [detector] = workdir.glob("detector-*")
    cfg = json.loads((detector / "config.json").read_text())
    assert cfg["class_agnostic"] is True and cfg["num_classes"] == 1 and cfg["labels"] == ["action"]
    assert cfg["input_length"] == 192 == cfg["max_seq_len"]
    assert cfg["inputs"]["detector_input"] == {"length": 192, "class_agnostic": True}
    assert cfg["recipe"] == "published" and cfg["model"]["width"] == 256  # auto on the user's features

    [raw] = workdir.glob("detections-*")
    raw = json.loads((raw / "detections.json").read_text())
    assert raw["postprocessing"] == {"max_dets": 100, "nms_sigma": 0.75, "voting_thresh": 0.9}
    assert {d["label"] for dets in raw["results"].values() for d in dets} == {"action"}
    assert max(len(d) for d in raw["results"].values()) <= 100

    [classes] = workdir.glob("video_classes-*")
    metrics = json.loads((classes / "metrics.json").read_text())
    assert metrics["source"] == "classifier" and metrics["classes"] == 3 and metrics["test_videos"] == 3
    assert 0.0 <= metrics["test_top1"] <= 1.0

    [fused] = workdir.glob("fused_detections-*")
    fused = json.loads((fused / "detections.json").read_text())
    for video, dets in fused["results"].items():
        assert len(dets) == 2 * len(raw["results"][video])  # each detection once per top-2 class
        assert {d["label"] for d in dets} <= set(labels) and len({d["label"] for d in dets}) == 2

    [evaluation] = workdir.glob("evaluation-*")
    ev = json.loads((evaluation / "evaluation.json").read_text())
    assert ev["thresholds"] == list(ANET_TIOUS) and len(ev["mAP"]) == 10
    assert 0.0 <= ev["average_mAP"] <= 1.0 and ev["report"]["max_dets"] == 200
    assert ev["video_classes"]["test_top1"] == metrics["test_top1"]


def test_external_video_scores_replace_the_classifier(tmp_path):
    src, annotations, labels = _dataset(tmp_path)
    db = json.loads(annotations.read_text())["database"]
    test = sorted(v for v, x in db.items() if x["subset"] == "validation")
    # scores that put each test video's first ground-truth class first (CUHK layout, ids with the v_ prefix)
    truth = {v: db[v]["annotations"][0]["label"] for v in test}
    good = tmp_path / "cuhk.json"
    good.write_text(json.dumps({"results": {f"v_{v}": [0.9 if c == truth[v] else 0.05 for c in labels]
                                            for v in test}, "class": labels}))
    workdir = tmp_path / "runs"
    base = ["Evaluate", "--dataset-features", str(src), "--dataset-annotations", str(annotations),
            "--dataset-preset", "anet", "--paths-workdir", str(workdir), "--ImportFeatures-window", "4",
            "--ImportFeatures-stride", "2", "--ImportFeatures-fps", "0", "--TrainDetector-epochs", "2"]
    result = run_luigi([*base, "--ClassifyVideos-scores-file", str(good)], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    [classes] = workdir.glob("video_classes-*")
    metrics = json.loads((classes / "metrics.json").read_text())
    assert metrics["source"] == "external" and metrics["file"] == str(good.resolve()) and metrics["test_top1"] == 1.0
    assert not (classes / "classifier.pt").exists()
    [ev] = workdir.glob("evaluation-*")
    assert json.loads((ev / "evaluation.json").read_text())["video_classes"]["source"] == "external"

    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"results": {f"v_{v}": [0.5] * len(labels) for v in test[1:]}, "class": labels}))
    failed = run_luigi([*base, "--ClassifyVideos-scores-file", str(missing)], tmp_path)
    assert failed.returncode == 30
    assert f"missing.json: no scores for video '{test[0]}'" in failed.stderr
