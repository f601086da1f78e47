"""The documented command lines of issue 28 as real luigi runs on imported synthetic features: a bf16 detector
trained in deterministic mode, then Detect reading its recorded precision; the encoder in bf16, deterministic."""
from __future__ import annotations

import json

from tests.conftest import run_luigi
from tests.test_anet_run import _dataset


def test_bf16_deterministic_training_and_detection_from_the_command_line(tmp_path):
    src, annotations, _ = _dataset(tmp_path)
    workdir = tmp_path / "runs"
    base = ["--dataset-features", str(src), "--dataset-annotations", str(annotations), "--paths-workdir",
            str(workdir), "--ImportFeatures-window", "4", "--ImportFeatures-stride", "2", "--workers", "1",
            "--dataset-train-subset", "training", "--dataset-test-subset", "validation"]  # _dataset's subsets
    detector = ["--detector", "actionformer", "--TrainDetector-epochs", "2", "--TrainDetector-deterministic",
                "--actionformer-train", '{"precision": "bf16"}', "--actionformer-model", '{"width": 32}']
    result = run_luigi(["Detect", *base, *detector], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    [trained] = workdir.glob("detector-*")
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["train"]["precision"] == "bf16" and cfg["deterministic"] is True
    [dets] = workdir.glob("detections-*")
    assert any(json.loads((dets / "detections.json").read_text())["results"].values())

    encoder = ["--TrainEncoder-options", '{"precision": "bf16", "iterations_per_epoch": 2}', "--TrainEncoder-epochs",
               "1", "--TrainEncoder-deterministic"]
    result = run_luigi(["TrainEncoder", *base, *encoder], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    [enc] = workdir.glob("encoder-*")
    assert json.loads((enc / "config.json").read_text())["train"]["precision"] == "bf16"
