"""docs/extending.md's worked detector example, run: a toy detector registered in one place gets its --detector
choice, its [section], its small recipe and its report rows, and trains for one epoch through the pipeline
(ImportFeatures -> TrainDetector -> Detect -> Evaluate, the real `luigi --module tests.toy_detector` command on a
tiny feature benchmark)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import luigi
import pytest
from luigi.cmdline_parser import CmdlineParser

import tests.toy_detector  # noqa: F401 - registers tinyformer in this process too
from tests.conftest import BIN, REPO, luigi_env


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    from pipeline.cli import main

    out = tmp_path_factory.mktemp("tiny_features") / "bench"
    assert main(["synth", "--features", str(out), "--videos-train", "3", "--videos-test", "2", "--width", "64",
                 "--max-duration", "30", "--seed", "1"]) == 0
    return out


def test_one_registration_gives_choice_section_recipe_and_rows(tmp_path):
    from pipeline import config
    from pipeline.detector_tasks import TrainDetector
    from pipeline.report_tasks import Report
    from tal_pipeline.stages.evaluation.variant import Variant

    assert luigi.task_register.Register.get_task_cls("tinyformer") is config.DETECTOR_SETTINGS["tinyformer"]
    with CmdlineParser.global_instance(["TrainDetector", "--no-lock", "--paths-workdir", str(tmp_path),
                                        "--tinyformer-model", '{"width": 8}']):
        spec = TrainDetector(detector="tinyformer").spec()
        assert spec.model == {"width": 8} and spec.train["epochs"] == 1 and spec.train["batch_size"] == 2
        rows = Report(detectors=["tinyformer"], seeds=1).variants()
        assert Variant.of("tinyformer") in rows and Variant.of("tinyformer", True) in rows
        with pytest.raises(ValueError, match=r"unknown detector 'nosuch'; registered: \[.*'tinyformer'\]"):
            TrainDetector(detector="nosuch")


def test_a_registered_detector_trains_one_epoch_through_the_pipeline(features, tmp_path):
    """The documented command line: luigi imports the module that registers the detector, then runs the chain."""
    data = ["--dataset-features", str(features / "features"), "--dataset-annotations",
            str(features / "annotations.json")]
    cmd = [str(BIN / "luigi"), "--module", "tests.toy_detector", "Evaluate", "--Evaluate-detector", "tinyformer", *data,
           "--dataset-train-subset", "validation", "--dataset-test-subset", "test", "--detectors-recipe", "small",
           "--paths-workdir", str(tmp_path / "runs")]
    result = subprocess.run(cmd, cwd=tmp_path, env={**luigi_env(), "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    [evaluation] = (tmp_path / "runs").glob("evaluation-*/evaluation.json")
    result = json.loads(evaluation.read_text())
    assert result["variant"]["detector"] == "tinyformer" and 0.0 <= result["average_mAP"] <= 1.0
    [detector] = (tmp_path / "runs").glob("detector-*")
    config = json.loads((detector / "config.json").read_text())
    assert config["name"] == "tinyformer" and config["model"] == {"width": 16, "levels": 2}
    assert config["spec"]["detector"] == "tinyformer" and config["spec"]["train"]["epochs"] == 1
    assert json.loads((detector / "health.json").read_text())["epochs"] == 1
