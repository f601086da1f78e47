"""The detector tasks' graph: each boundary source requires exactly what it uses (the oracle neither the encoder nor
a similarity matrix), the inference recipe and the Report read their upstream tasks from requires(), and the
oracle variant runs for real (luigi subprocess) in a fresh workdir."""
from __future__ import annotations

import json

import luigi
import pytest
import torch
from luigi.cmdline_parser import CmdlineParser

from pipeline.bapg_tasks import SimilarityMatrices, TSCProposals
from pipeline.detector_tasks import TrainDetector
from pipeline.report_tasks import Report
from tal_pipeline.stages.evaluation.variant import Variant
from tests.conftest import dataset_args, run_luigi

SMALL = ["--TrainDetector-epochs", "2", "--TSCProposals-ms", "[2,4]", "--TSCProposals-rates", "[]",
         "--SampleFrames-size", "32"]


def _upstream_families(task) -> set[str]:
    """The task families of everything upstream of `task`."""
    found, todo = set(), list(luigi.task.flatten(task.requires()))
    while todo:
        dep = todo.pop()
        found.add(dep.get_task_family())
        todo += luigi.task.flatten(dep.requires())
    return found


@pytest.fixture
def configured(tmp_path):
    """The command-line configuration of a run in an empty workdir (the synthetic dataset, never generated)."""
    with CmdlineParser.global_instance(["TrainDetector", "--paths-workdir", str(tmp_path), "--no-lock"]):
        yield


@pytest.mark.parametrize("source, encoder, similarity, block", [
    ("tsc", True, True, 1024), ("random", True, True, 1024), ("raw", False, True, 1024),
    ("oracle", False, False, None)])
def test_each_boundary_source_requires_what_it_uses(configured, source, encoder, similarity, block):
    task = TrainDetector(detector="afsd", bapg=True, bapg_source=source)
    upstream = _upstream_families(task)
    assert ("encoder" in task.requires()) is encoder and ("TrainEncoder" in upstream) is encoder
    assert ("SimilarityMatrices" in upstream) is similarity
    recipe = task.inference_recipe().bapg
    assert (recipe.source, recipe.use_encoder, recipe.block) == (source, encoder, block)
    baseline = TrainDetector(detector="afsd")
    assert set(baseline.requires()) == {"features"} and baseline.inference_recipe().bapg is None
    assert not {"TrainEncoder", "SimilarityMatrices", "ProposalFeatures"} & _upstream_families(baseline)


def test_recipe_values_come_from_the_required_tasks(tmp_path):
    args = ["TrainDetector", "--paths-workdir", str(tmp_path), "--no-lock", "--SampleFrames-fps", "5",
            "--SimilarityMatrices-block", "256", "--TSCProposals-ms", "[3]", "--ProposalFeatures-projection-dim", "64"]
    with CmdlineParser.global_instance(args):
        recipe = TrainDetector(bapg=True).inference_recipe()
    assert (recipe.frames.fps, recipe.bapg.block, recipe.bapg.ms, recipe.bapg.projection_dim) == (5.0, 256, (3,), 64)


def test_report_reads_every_input_from_its_evaluations_chains(configured):
    req = Report(detectors=["afsd"], seeds=2, ablations=["oracle"], ablation_seeds=1).requires()
    assert set(req["evaluations"]) == {Variant.of("afsd", b, seed=s) for b in (False, True) for s in (0, 1)} | {
        Variant.of("afsd", True, "oracle"), Variant.of("afsd", untrained=True)}
    for variant, evaluation in req["evaluations"].items():
        assert evaluation.run_variant() == variant
        detect = evaluation.requires()
        assert req["trainings"][variant].task_id == detect.requires()["model"].task_id
    assert set(req["detections"]) == {Variant.of("afsd"), Variant.of("afsd", True)}  # seed 0, the plots' rows
    method = req["detections"][Variant.of("afsd", True)]
    proposals = method.requires()["bapg"].requires()["proposals"]
    assert req["proposals"].task_id == proposals.task_id and req["proposals"].source == "tsc"
    assert req["similarity"].task_id == proposals.requires()["similarity"].task_id and req["similarity"].use_encoder
    assert req["encoder"].folds == 0 and req["features"].task_id == method.requires()["features"].task_id
    with pytest.raises(ValueError, match="no run to report on"):
        Report(detectors=[]).requires()


def test_report_requires_the_proposals_of_every_boundary_source_but_no_extra_detector(configured):
    report = Report(detectors=["afsd"], seeds=1)
    req = report.requires()
    assert list(req["boundaries"]) == ["tsc", "raw", "random", "oracle"]
    assert req["boundaries"]["tsc"].task_id == req["proposals"].task_id  # the method's own store
    for source, task in req["boundaries"].items():
        assert isinstance(task, TSCProposals) and task.source == source
    assert set(req["boundaries"]["oracle"].requires()) == {"features"}  # the oracle needs no S
    raw = req["boundaries"]["raw"].requires()["similarity"]
    assert isinstance(raw, SimilarityMatrices) and not raw.use_encoder
    assert {v.bapg_source for v in req["evaluations"]} == {None, "tsc"}  # the table needs no ablation detector
    families = {t.get_task_family() for t in luigi.task.flatten(req["boundaries"])}
    assert families == {"TSCProposals"}
    fewer = Report(detectors=["afsd"], seeds=1, boundary_sources=["oracle", "tsc"]).requires()["boundaries"]
    assert list(fewer) == ["tsc", "oracle"]
    assert Report(detectors=["afsd"], seeds=1, boundary_sources=["tsc"]).output().path != report.output().path
    with pytest.raises(ValueError, match=r"unknown boundary source\(s\) \['bogus'\]"):
        Report(detectors=["afsd"], boundary_sources=["tsc", "bogus"]).requires()


def test_random_source_reads_the_tsc_store_of_the_configured_scales(configured):
    # luigi reuses a task instance for equal parameters, and rates (8, 16, 32) from luigi.cfg equal (8.0, 16.0,
    # 32.0) but hash to another path: the random source's tsc store must not depend on which came first.
    from luigi.task_register import Register

    Register.clear_instance_cache()
    dependency = TSCProposals(source="random").requires()["tsc"].output().path
    Register.clear_instance_cache()
    assert dependency == TSCProposals(source="tsc").output().path


def test_oracle_variant_runs_in_a_fresh_workdir(tiny_synthetic, tmp_path):
    workdir = tmp_path / "runs"
    result = run_luigi(["Evaluate", "--Evaluate-bapg", "--Evaluate-bapg-source", "oracle", "--Evaluate-detector",
                        "actionformer", *SMALL, *dataset_args(tiny_synthetic, workdir)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    made = {p.name.split("-")[0] for p in workdir.iterdir() if not p.name.startswith(("synthetic-", "."))}
    assert made == {"frames", "features", "proposals", "bapg_features", "detector", "detections", "evaluation"}
    [detector] = workdir.glob("detector-*")
    ckpt = torch.load(detector / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert "encoder" not in ckpt
    bapg = ckpt["config"]["inputs"]["bapg"]
    assert (bapg["source"], bapg["use_encoder"], bapg["block"]) == ("oracle", False, None)
    assert json.loads((detector / "health.json").read_text())["epochs"] == 2
    [evaluation] = workdir.glob("evaluation-*/evaluation.json")
    ev = json.loads(evaluation.read_text())
    assert ev["variant"] == {"detector": "actionformer", "bapg": True, "bapg_source": "oracle", "seed": 0,
                             "untrained": False, "bapg_groups": ["pooled", "boundary"]}
    assert "health" not in ev  # the Report reads it from the TrainDetector's health.json
    [detections] = workdir.glob("detections-*/detections.json")
    assert json.loads(detections.read_text())["external_data"] == ev["variant"]


def test_detector_choices_are_the_registry():
    from pipeline.config import DETECTOR_SETTINGS
    from pipeline.detectors import BUILTIN, detector_names
    from tal_pipeline.models.detector_registry import DETECTORS

    assert set(BUILTIN) <= set(detector_names()) == set(DETECTOR_SETTINGS) <= set(DETECTORS)
    assert set(BUILTIN) == {"afsd", "actionformer", "tridet", "tadtr"}


def test_cross_fitting_folds_rank_videos_in_sorted_order():
    """Fold = rank in sorted order modulo K, whatever order the annotations list the videos in."""
    from pipeline.bapg_tasks import cross_fitting_folds

    assert cross_fitting_folds(["v3", "v1", "v4", "v2", "v0"], 2) == {"v0": 0, "v1": 1, "v2": 0, "v3": 1, "v4": 0}
    assert cross_fitting_folds(["b", "a", "c"], 3) == {"a": 0, "b": 1, "c": 2}
    assert cross_fitting_folds([], 2) == {}
