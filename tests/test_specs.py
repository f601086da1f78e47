"""One resolved spec per stage (pipeline.specs): every artifact path of the full FullRun graph, for both dataset
presets, is a pure function of its stage's spec and its upstream artifacts' hashes; changing one value that
shapes a stage changes the path of that stage and of everything downstream of it, and nothing upstream.
The graphs are built as `tal-pipeline plan` builds them: nothing runs."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import luigi
import pytest
from luigi.cmdline_parser import CmdlineParser

from pipeline import dataset
from pipeline.base import StageTask, named_requirements, resolving
from pipeline.graph import walk
from pipeline.hashing import canonical, param_hash, spec_hash

PRESETS = {"thumos14": [], "anet": ["--dataset-preset", "anet"]}


def _hash_of(path: str) -> str:
    """The hash in an artifact path: runs/proposals-<hash>.zarr -> <hash>."""
    return Path(path).name.removesuffix(".zarr").rsplit("-", 1)[1]


def _graph(workdir: Path, args: list[str]) -> dict:
    """{key: {"family", "path", "deps"}} of every stage of FullRun under these flags; key: the task's family and its
    parameters (task_id), deps: the keys it requires. Checks each path against its spec on the way."""
    with CmdlineParser.global_instance(["FullRun", "--paths-workdir", str(workdir), "--no-lock", *args]) as parser, \
            resolving():  # one resolution of each spec and hash for the whole graph, as the scheduler's walk has
        data_hash = param_hash(dataset.identity(dataset.current()))
        graph = {}
        for task in walk(parser.get_task_obj()):
            if not isinstance(task, StageTask):
                continue
            spec = task.spec()
            assert dataclasses.is_dataclass(spec) and type(spec).__dataclass_params__.frozen, task.task_id
            deps = {role: dep for role, dep in named_requirements(task.requires()).items()
                    if isinstance(dep, StageTask)}
            upstream = {"dataset": data_hash, **{role: _hash_of(dep.output().path) for role, dep in deps.items()}}
            expected = workdir / f"{task.artifact}-{spec_hash(task.artifact, spec, upstream)}{task.suffix}"
            assert task.output().path == str(expected), task.task_id
            json.dumps(canonical(spec))  # plain JSON: what config.json records
            graph[task.task_id] = {"family": task.get_task_family(), "path": task.output().path,
                                   "deps": [d.task_id for d in deps.values()], "task": task}
    return graph


@pytest.mark.parametrize("preset", PRESETS)
def test_every_path_of_the_full_graph_is_its_spec_and_its_upstream_hashes(tmp_path, preset):
    graph = _graph(tmp_path, PRESETS[preset])
    families = {n["family"] for n in graph.values()}
    assert {"SampleFrames", "ExtractFeatures", "TrainEncoder", "SimilarityMatrices", "TSCProposals",
            "ProposalFeatures", "TrainDetector", "Detect", "Evaluate", "Report"} <= families
    assert ({"ClassifyVideos", "FuseVideoClasses"} <= families) is (preset == "anet")
    paths = [n["path"] for n in graph.values()]
    assert len(set(paths)) == len(paths)  # no two tasks of the graph share an artifact


# One value per stage: (flags, the family it shapes, which of its tasks (None: all), preset)
CHANGES = [
    (["--SampleFrames-fps", "5"], "SampleFrames", None, "thumos14"),
    (["--ExtractFeatures-stride", "8"], "ExtractFeatures", None, "thumos14"),
    (["--TrainEncoder-seed", "1"], "TrainEncoder", None, "thumos14"),
    (["--SimilarityMatrices-block", "512"], "SimilarityMatrices", None, "thumos14"),
    (["--TSCProposals-max-union", "2"], "TSCProposals", None, "thumos14"),
    (["--ProposalFeatures-projection-dim", "64"], "ProposalFeatures", None, "thumos14"),
    (["--afsd-model", '{"width": 64}'], "TrainDetector", {"detector": "afsd"}, "thumos14"),
    (["--Detect-nms-sigma", "0.4"], "Detect", None, "thumos14"),
    (["--Evaluate-mode", "thumos14"], "Evaluate", None, "thumos14"),
    (["--Report-examples", "2"], "Report", None, "thumos14"),
    (["--ClassifyVideos-seed", "1"], "ClassifyVideos", None, "anet"),
    (["--FuseVideoClasses-topk", "3"], "FuseVideoClasses", None, "anet"),
]


def _key(node: dict, family: str, flag: str) -> tuple:
    """A task's identity across the two graphs: its family and parameters, less the changed one of its family."""
    task = node["task"]
    name = flag.removeprefix(f"--{family}-").replace("-", "_")
    params = {k: v for k, v in task.to_str_params(only_significant=True).items()
              if not (node["family"] == family and k == name)}
    return node["family"], tuple(sorted(params.items()))


@pytest.fixture(scope="module")
def small_graphs(tmp_path_factory):
    """{preset: (workdir, flags, graph)} of FullRun with one seed: the graphs before any change, built once."""
    workdir = tmp_path_factory.mktemp("specs")
    flags = {p: [*PRESETS[p], "--Report-seeds", "1"] for p in PRESETS}
    return {p: (workdir, flags[p], _graph(workdir, flags[p])) for p in PRESETS}


@pytest.mark.parametrize("flags, family, which, preset", CHANGES, ids=[c[1] for c in CHANGES])
def test_one_changed_value_moves_its_stage_and_everything_downstream_only(small_graphs, flags, family, which, preset):
    workdir, small, before = small_graphs[preset]
    after = _graph(workdir, [*small, *flags])

    def shaped(node: dict) -> bool:
        return node["family"] == family and all(getattr(node["task"], k) == v for k, v in (which or {}).items())

    affected: dict[str, bool] = {}
    for task_id, node in before.items():  # walk() lists dependencies first
        affected[task_id] = shaped(node) or any(affected[d] for d in node["deps"])
    old = {_key(n, family, flags[0]): (n["path"], affected[t]) for t, n in before.items()}
    new = {_key(n, family, flags[0]): n["path"] for n in after.values()}
    assert set(old) == set(new)
    assert any(a for _, a in old.values())
    for key, (path, moved) in old.items():
        assert (new[key] != path) is moved, (key[0], path, new[key])


def test_numbers_hash_by_value_and_a_resolved_default_hashes_as_given(tmp_path):
    from pipeline.bapg_tasks import TrainEncoder, TSCProposals
    from pipeline.data_tasks import SampleFrames
    from tal_pipeline.stages.bapg.encoder import DEFAULT_ENCODER

    assert canonical({"a": 8.0, "b": (1, 2.5), "c": [True, None]}) == {"a": 8, "b": [1, 2.5], "c": [True, None]}
    with CmdlineParser.global_instance(["FullRun", "--paths-workdir", str(tmp_path), "--no-lock"]):
        paths = {TSCProposals(rates=r).output().path for r in (None, [8, 16, 32], [8.0, 16.0, 32.0])}
        assert len(paths) == 1  # the thumos14 preset's rates, given or not, ints or floats
        assert TSCProposals(rates=[8, 16]).output().path not in paths
        assert SampleFrames(fps=8).output().path == SampleFrames(fps=8.0).output().path
        default = TrainEncoder().output().path
        assert TrainEncoder(margin=DEFAULT_ENCODER["margin"]).output().path == default  # one training, one path
        assert TrainEncoder(margin=1.0).output().path != default


def test_encoder_options_may_not_repeat_a_flag(tmp_path):
    from pipeline.bapg_tasks import TrainEncoder

    with CmdlineParser.global_instance(["FullRun", "--paths-workdir", str(tmp_path), "--no-lock"]):
        with pytest.raises(ValueError, match=r"\['margin'\] have flags of their own: use --TrainEncoder-margin"):
            TrainEncoder(options={"margin": 1.0, "context": 5}).spec()
        with pytest.raises(ValueError, match=r"unknown encoder config keys \['contxt'\]"):
            TrainEncoder(options={"contxt": 5}).spec()
        assert TrainEncoder(options={"context": 5}).spec().config["context"] == 5


def test_bapg_channels_travel_in_the_specs(tmp_path):
    """B's width comes from the specs (scales x (projection + 4) for the default groups), not from a stored array."""
    from pipeline.detector_tasks import TrainDetector
    from pipeline.specs import I3D_WIDTH

    args = ["FullRun", "--paths-workdir", str(tmp_path), "--no-lock", "--TSCProposals-ms", "[2, 4]",
            "--TSCProposals-rates", "[1.5]", "--TSCProposals-penalty", "1"]
    with CmdlineParser.global_instance(args):
        assert TrainDetector(bapg=True).spec().bapg_channels == 4 * (128 + 4)
        assert TrainDetector(bapg=True, bapg_groups=["boundary", "novelty"]).spec().bapg_channels == 4 * 4 + 3
        assert TrainDetector(bapg=False).spec().bapg_channels == 0
    with CmdlineParser.global_instance([*args, "--ProposalFeatures-projection-dim", "0"]):
        assert TrainDetector(bapg=True, bapg_groups=["pooled"]).spec().bapg_channels == 4 * I3D_WIDTH


def test_i3d_width_is_the_models():
    from pipeline.specs import I3D_WIDTH
    from tal_pipeline.models.i3d import FEATURE_DIM

    assert I3D_WIDTH == FEATURE_DIM


def test_no_task_overrides_its_hash():
    """The identity of every stage is StageTask's: no subclass defines artifact_hash, upstream_hashes or
    artifact_path, and the old graph search is gone."""
    import pipeline.base

    for name in luigi.task_register.Register.task_names():
        cls = luigi.task_register.Register.get_task_cls(name)
        if issubclass(cls, StageTask) and cls is not StageTask:
            overridden = {"artifact_hash", "upstream_hashes", "artifact_path", "shaping_params"} & set(vars(cls))
            assert not overridden, (name, overridden)
    assert not hasattr(pipeline.base, "upstream") and not hasattr(StageTask, "shaping_params")
