"""The held-out selection protocol (benchmarks/bench_detector_recipe.py, shared by bench_bapg_probe.py) trains and
scores a candidate as a pipeline run of the same configuration would: the recipe, the dataset preset's inputs,
post-processing and tIoU thresholds. On thumos14 with the small recipe that is the candidate over the detector's
small recipe alone (the protocol's earlier figures stay comparable); on anet it adds the 192-step resize,
class-agnostic training and scoring, and the preset's thresholds."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from luigi.cmdline_parser import CmdlineParser

from tests.conftest import REPO, luigi_env

sys.path.insert(0, str(REPO / "benchmarks"))
from bench_detector_recipe import RunSettings, held_out_ground_truth, luigi_argv, run_settings  # noqa: E402


def _settings(detector: str, luigi_args: str = "", recipe: str = "small") -> RunSettings:
    import pipeline  # noqa: F401 - registers the tasks

    with CmdlineParser.global_instance(luigi_argv(luigi_args, recipe)):
        return run_settings(detector)


@pytest.mark.parametrize("detector", ["afsd", "actionformer", "tridet", "tadtr"])
def test_thumos14_small_run_is_the_candidate_over_the_small_recipe_alone(detector):
    from tal_pipeline.stages.detectors.training import resolve_train_config

    settings = _settings(detector, "--dataset-features /data/f.zarr")  # a user's data: auto would be published
    assert settings.train == {**resolve_train_config(detector), "model": {}, "fusion": {}}
    assert settings.post == {"max_dets": 200, "nms_sigma": None, "voting_thresh": 0.0}  # detect()'s defaults
    assert settings.thresholds == (0.3, 0.4, 0.5, 0.6, 0.7) and not settings.class_agnostic


def test_anet_run_resizes_scores_class_agnostically_and_takes_the_detectors_anet_options():
    settings = _settings("tridet", "--dataset-preset anet")
    assert settings.train["input_length"] == 192 and settings.train["class_agnostic"] is True
    assert settings.class_agnostic
    assert settings.train["model"]["num_bins"] == 12  # TriDet's ActivityNet config (stages/presets.py ANET_DETECTORS)
    # the Detect task's: TriDet's ActivityNet post-processing (Soft-NMS sigma 0.7, voting 0.95, 200 detections)
    assert settings.post == {"max_dets": 200, "nms_sigma": 0.7, "voting_thresh": 0.95}
    assert _settings("actionformer", "--dataset-preset anet").post == {"max_dets": 100, "nms_sigma": 0.75,
                                                                         "voting_thresh": 0.9}
    assert settings.thresholds[0] == 0.5 and settings.thresholds[-1] == 0.95 and len(settings.thresholds) == 10
    assert settings.eval_max_dets == 200


def test_a_candidate_is_laid_over_the_run_key_by_key():
    settings = RunSettings(train={"epochs": 160, "lr": 1e-3, "input_length": 192, "class_agnostic": True,
                                  "model": {"num_bins": 12, "window": 15}, "fusion": {"gate": False}},
                           post={}, thresholds=(0.5,), eval_max_dets=200)
    cfg = settings.with_candidate({"input_length": None, "max_seq_len": 768, "model": {"window": 9},
                                   "fusion": {"gate": True}})
    assert cfg == {"epochs": 160, "lr": 1e-3, "input_length": None, "class_agnostic": True, "max_seq_len": 768,
                   "model": {"num_bins": 12, "window": 9}, "fusion": {"gate": True}}
    assert settings.train["model"] == {"num_bins": 12, "window": 15}  # the run's own settings are not touched


def test_the_recipe_is_added_unless_the_luigi_arguments_give_one():
    assert luigi_argv("--dataset-preset anet", "small") == ["FullRun", "--dataset-preset", "anet",
                                                            "--detectors-recipe", "small"]
    assert luigi_argv("--detectors-recipe published", "small") == ["FullRun", "--detectors-recipe", "published"]
    assert luigi_argv("--detectors-recipe=published", "small")[-1] == "--detectors-recipe=published"
    assert _settings("tridet", "--dataset-features /f.zarr --detectors-recipe published").train["epochs"] != 160


def test_recipe_search_on_an_anet_shaped_set_scores_held_out_videos_class_agnostically(tmp_path):
    """The bench end to end on a tiny ActivityNet-shaped set with `--dataset-preset anet` and nothing else: 4 training
    videos in 2 folds, two candidates (the resize and TriDet's native grid padded to 768), each scored at the
    preset's thresholds."""
    from pipeline.cli import main

    data = tmp_path / "anet"
    assert main(["synth", "--features", str(data), "--preset", "anet", "--videos", "7", "--width", "16"]) == 0
    luigi_args = (f"--dataset-preset anet --dataset-features {data / 'features'} "
                  f"--dataset-annotations {data / 'annotations.json'} --paths-workdir {tmp_path / 'runs'}")
    candidates = [{"epochs": 1, "model": {"width": 16, "levels": 3}},
                  {"epochs": 1, "model": {"width": 16, "levels": 3}, "input_length": None, "max_seq_len": 768}]
    out = tmp_path / "recipe.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_detector_recipe.py", "--no-readme", "--detector", "tridet", "--seeds", "1",
         "--folds", "2", "--candidates", json.dumps(candidates), "--threads", "1", "--luigi-args", luigi_args,
         "--out", str(out)],
        cwd=REPO, env={**luigi_env(), "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(tIoU 0.5:0.05:0.95, class-agnostic)" in result.stdout
    assert result.stdout.count(": seed 0, held out ") == 4  # each run printed as it ends: 2 candidates x 2 folds
    table = json.loads(out.read_text())
    assert table["run"]["train"]["input_length"] == 192 and table["run"]["train"]["class_agnostic"] is True
    assert [row["candidate"] for row in table["table"]] == candidates
    for row in table["table"]:
        assert row["runs"] == 2 and all(0.0 <= m <= 1.0 for m in row["per_run"])


def test_class_agnostic_ground_truth_is_one_class_of_the_held_out_videos(tmp_path):
    from pipeline.cli import main
    from tal_pipeline.stages.detectors.training import FOREGROUND
    from tal_pipeline.storage.annotations import load_annotations

    data = tmp_path / "anet"
    assert main(["synth", "--features", str(data), "--preset", "anet", "--videos", "7", "--width", "16"]) == 0
    ann = load_annotations(data / "annotations.json")
    held_out = sorted(ann.videos["video"])[:3]
    agnostic = held_out_ground_truth(ann, held_out, True)
    assert set(agnostic.videos["video"]) == set(agnostic.instances["video"]) <= set(held_out)
    assert set(agnostic.instances["label"]) == {FOREGROUND}
    per_class = held_out_ground_truth(ann, held_out, False)
    assert FOREGROUND not in set(per_class.instances["label"]) and len(per_class.instances) == len(agnostic.instances)
