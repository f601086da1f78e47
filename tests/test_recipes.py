"""Named detector recipes: every published value against the reference table (tests/reference_recipes.py, which
names each value's reference file), the small recipes as they were, and how a run picks and records its recipe."""
from __future__ import annotations

import json
import subprocess
from dataclasses import asdict

import pytest
from luigi.cmdline_parser import CmdlineParser
from luigi.configuration import LuigiConfigParser

from tal_pipeline.models.detector_registry import resolve_model_config
from tal_pipeline.stages.detectors.published_recipes import AF, AS, TD, TT
from tal_pipeline.stages.detectors.recipes import SMALL_TRAIN, recipe_entry, recipe_sources
from tal_pipeline.stages.detectors.training import resolve_train_config
from tal_pipeline.stages.presets import PRESETS
from tests.conftest import BIN, luigi_env
from tests.reference_recipes import REFERENCE

CASES = [(d, p) for d in ("afsd", "actionformer", "tridet", "tadtr") for p in ("thumos14", "anet")]
REPOS = {"afsd": AS, "actionformer": AF, "tridet": TD, "tadtr": TT}


@pytest.mark.parametrize("detector,preset", CASES)
def test_every_published_value_is_the_reference_files(detector, preset):
    entry = recipe_entry("published", PRESETS[preset], detector)
    resolved = {f"{part}.{k}": v for part, values in entry.items() for k, v in values.items()}
    sources = recipe_sources(preset, detector)
    table = REFERENCE[detector][preset]
    checked = set()
    for file, values in table.items():
        for key, want in values.items():
            assert key in resolved, f"{detector}/{preset}: {key} ({file}) is not in the published recipe"
            assert resolved[key] == pytest.approx(want) if isinstance(want, float) else resolved[key] == want, \
                f"{detector}/{preset}: {key} = {resolved[key]!r}, {file} says {want!r}"
            assert sources[key].startswith(REPOS[detector] + " ") and f" {file}: " in sources[key], \
                f"{detector}/{preset}: {key} is credited to {sources[key]!r}, not {file}"
            checked.add(key)
    assert set(resolved) == checked, f"{detector}/{preset}: values with no reference row: {set(resolved) - checked}"


@pytest.mark.parametrize("detector,preset", CASES)
def test_published_recipes_build_and_resolve_as_given(detector, preset):
    entry = recipe_entry("published", PRESETS[preset], detector)
    model = resolve_model_config(detector, entry["model"])  # every option is one the detector has
    assert {k: model[k] for k in entry["model"]} == entry["model"]
    train = resolve_train_config(detector, entry["train"])
    # nothing of the small recipe leaks under a published one: it sets every key the small one does
    assert set(SMALL_TRAIN.get(detector, {})) <= set(entry["train"])
    assert {k: train[k] for k in entry["train"]} == entry["train"]


def test_small_recipes_are_todays_plus_the_anet_detector_settings():
    for detector in ("afsd", "actionformer", "tridet", "tadtr"):
        assert recipe_entry("small", PRESETS["thumos14"], detector) == {"model": {}, "train": {}, "post": {}}
    anet = PRESETS["anet"]
    assert recipe_entry("small", anet, "tadtr") == {"model": {}, "train": dict(anet.train), "post": {}}
    td = recipe_entry("small", anet, "tridet")  # TriDet's ActivityNet options, on the small width and schedule
    assert td["train"] == dict(anet.train) and "width" not in td["model"]
    assert (td["model"]["num_bins"], td["model"]["window"], td["model"]["k"], td["model"]["iou_weight_power"],
            td["model"]["label_smoothing"]) == (12, 15, 1.3, 1.0, 0.1)
    assert td["post"] == {"max_dets": 200, "nms_sigma": 0.7, "voting_thresh": 0.95}
    af = recipe_entry("small", anet, "actionformer")["model"]
    assert (af["abs_pe"], af["label_smoothing"], af["reg_weight"]) == (True, 0.1, 2.0)
    for detector, parts in anet.detectors.items():  # the same values as the published recipe's
        published = recipe_entry("published", anet, detector)
        small = recipe_entry("small", anet, detector)
        assert all(small[part][k] == published[part][k] for part, keys in parts.items() for k in keys)
    af = resolve_train_config("actionformer", {})
    assert (af["epochs"], af["lr"], af["weight_decay"], af["warmup_epochs"], af["max_seq_len"], af["crop_ratio"],
            af["decay_exempt"], af["lr_min"], af["lr_steps"], af["inference_len"]) == \
        (160, 1e-3, 0.05, 5, 256, [0.9, 1.0], False, 0.0, None, None)
    td = resolve_train_config("tridet", {})
    assert (td["epochs"], td["lr"], td["warmup_epochs"]) == (160, 1e-3, 5)  # the one budget rule (method.md §12)
    assert resolve_train_config("tadtr", {})["max_seq_len"] == 128
    with pytest.raises(ValueError, match="unknown detector recipe 'big'"):
        recipe_entry("big", PRESETS["thumos14"], "tridet")


@pytest.fixture
def config_file(tmp_path):
    """A luigi.cfg read after every other, removed again after the test."""
    file = tmp_path / "luigi.cfg"
    file.write_text("")
    LuigiConfigParser.add_config_path(str(file))
    yield file
    LuigiConfigParser._config_paths.remove(str(file))
    LuigiConfigParser.reload()


def _train_task(args: list[str]):
    import pipeline  # noqa: F401 - registers the tasks

    with CmdlineParser.global_instance(["TrainDetector", *args]) as cp:
        task = cp.get_task_obj()
        from pipeline.detector_tasks import Detect

        detect = Detect(**task.variant())
        return task.output().path, task.spec(), asdict(detect.spec()), detect.output().path


def test_auto_picks_small_on_synthetic_data_and_the_recipe_shapes_the_path():
    from pipeline.config import detector_recipe

    for detector, *extra in (("actionformer",), ("tadtr", "--dataset-preset", "anet"), ("afsd", "--bapg")):
        small, spec, _, detect_small = _train_task(["--detector", detector, *extra])
        assert spec.recipe == "small"
        with CmdlineParser.global_instance(["TrainDetector"]):
            assert detector_recipe() == "small"
        published, spec, _, detect_published = _train_task(["--detector", detector, *extra, "--detectors-recipe",
                                                            "published"])
        assert spec.recipe == "published" and published != small and detect_published != detect_small


def test_auto_picks_published_on_the_users_features_and_given_json_wins(config_file, tmp_path):
    from pipeline.config import detector_recipe, detector_settings

    (tmp_path / "annotations.json").write_text(json.dumps({"database": {}}))
    config_file.write_text(f"[dataset]\nfeatures = {tmp_path}\nannotations = {tmp_path / 'annotations.json'}\n"
                           "preset = anet\n")
    LuigiConfigParser.reload()
    with CmdlineParser.global_instance(["TrainDetector", "--tridet-model", '{"num_bins": 8}',
                                        "--tridet-train", '{"epochs": 2}']):
        assert detector_recipe() == "published"
        settings = detector_settings("tridet")
        assert settings["recipe"] == "published"
        assert settings["model"]["num_bins"] == 8 and settings["model"]["window"] == 15  # given over the recipe
        assert settings["train"]["epochs"] == 2 and settings["train"]["max_seq_len"] == 768
    _, spec, post, _ = _train_task(["--detector", "tridet"])
    assert spec.recipe == "published" and spec.train["lr_min"] == 5e-5
    assert post == {"max_dets": 200, "nms_sigma": 0.7, "voting_thresh": 0.95}  # TriDet's anet test_cfg
    _, _, post, _ = _train_task(["--detector", "tridet", "--detectors-recipe", "small"])
    assert post == {"max_dets": 200, "nms_sigma": 0.7, "voting_thresh": 0.95}  # the anet preset's TriDet settings
    _, _, post, _ = _train_task(["--detector", "afsd", "--detectors-recipe", "small"])
    assert post == {"max_dets": 100, "nms_sigma": 0.85, "voting_thresh": 0.9}  # the preset's, AFSD's own sigma
    _, _, post, _ = _train_task(["--detector", "afsd"])
    assert post == {"max_dets": 100, "nms_sigma": 0.85, "voting_thresh": 0.0}  # AFSD's anet test: no voting
    _, _, post, _ = _train_task(["--detector", "tridet", "--Detect-nms-sigma", "0.3"])
    assert post["nms_sigma"] == 0.3  # a given Detect option wins over the recipe


def test_config_command_shows_the_recipe_a_run_uses(tmp_path):
    def used(cfg: str) -> dict:
        (tmp_path / "luigi.cfg").write_text(cfg)
        out = subprocess.run([str(BIN / "tal-pipeline"), "config", "--section", "detectors", "--json"], cwd=tmp_path,
                             env=luigi_env(), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return {r["key"]: r for r in json.loads(out.stdout)["values"]}

    rows = used("")
    assert rows["recipe"]["value"] == "auto" and rows["used_recipe"]["value"] == "small"
    assert "synthetic" in rows["used_recipe"]["source"]
    rows = used(f"[dataset]\nfeatures = {tmp_path}\n")
    assert rows["used_recipe"]["value"] == "published" and "your dataset" in rows["used_recipe"]["source"]
    rows = used(f"[dataset]\nfeatures = {tmp_path}\n[detectors]\nrecipe = small\n")
    assert rows["used_recipe"]["value"] == "small"
