"""docs/extending.md's worked detector example, run: a toy detector registered in one place gets its --detector
choice, its [section], its small recipe and its report rows, and trains for one epoch through the pipeline
(ImportFeatures -> TrainDetector -> Detect -> Evaluate, in-process luigi on a tiny feature benchmark)."""
from __future__ import annotations

import json
from pathlib import Path

import luigi
import pytest
from luigi.cmdline_parser import CmdlineParser

from tal_pipeline.models.actionformer.model import ActionFormer


class TinyFormer(ActionFormer):
    """A detector the package does not ship: ActionFormer cut to two pyramid levels of width 16."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, levels: int = 2):
        super().__init__(in_channels, num_classes, width=width, levels=levels, heads=2, window=5, stem_blocks=1)


@pytest.fixture(scope="module")
def registered():
    from pipeline.detectors import register_detector

    register_detector("tinyformer", TinyFormer, small_train={"epochs": 1, "batch_size": 2, "max_seq_len": 64})
    return "tinyformer"


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    from pipeline.cli import main

    out = tmp_path_factory.mktemp("tiny_features") / "bench"
    assert main(["synth", "--features", str(out), "--videos-train", "3", "--videos-test", "2", "--width", "64",
                 "--max-duration", "30", "--seed", "1"]) == 0
    return out


def _args(features: Path, workdir: Path) -> list[str]:
    return ["Evaluate", "--no-lock", "--dataset-features", str(features / "features"), "--dataset-annotations",
            str(features / "annotations.json"), "--dataset-train-subset", "validation", "--dataset-test-subset",
            "test", "--detectors-recipe", "small", "--paths-workdir", str(workdir)]


def test_one_registration_gives_choice_section_recipe_and_rows(registered, tmp_path):
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


def test_a_registered_detector_trains_one_epoch_through_the_pipeline(registered, features, tmp_path):
    from pipeline.report_tasks import Evaluate

    with CmdlineParser.global_instance(_args(features, tmp_path)):
        task = Evaluate(detector="tinyformer")
        assert luigi.build([task], local_scheduler=True, workers=1, log_level="WARNING")
        result = json.loads((Path(task.output().path) / "evaluation.json").read_text())
    assert result["variant"]["detector"] == "tinyformer" and 0.0 <= result["average_mAP"] <= 1.0
    [detector] = tmp_path.glob("detector-*")
    config = json.loads((detector / "config.json").read_text())
    assert config["name"] == "tinyformer" and config["model"] == {"width": 16, "levels": 2}
    assert config["spec"]["detector"] == "tinyformer" and config["spec"]["train"]["epochs"] == 1
    assert json.loads((detector / "health.json").read_text())["epochs"] == 1
