"""B's channel groups (stages/bapg/proposal_features.py): pooled, boundary, novelty, strength through the
ProposalFeatures stage function on a video whose boundaries are known, the group selection, and the task graph
(ProposalFeatures --groups, TrainDetector --bapg-groups, the Report's group ablations)."""
from __future__ import annotations

import numpy as np
import pytest
from luigi.cmdline_parser import CmdlineParser

from pipeline.bapg_tasks import ProposalFeatures
from pipeline.detector_tasks import Detect, TrainDetector
from pipeline.report_tasks import Report
from tal_pipeline.stages.bapg.proposal_features import (
    DEFAULT_GROUPS,
    GROUPS,
    NOVELTY_WIDTHS,
    boundary_aware_features,
    boundary_channels,
    normalise_groups,
    projection_matrix,
    proposal_features_to_store,
    segment_pooling,
)
from tal_pipeline.stages.bapg.proposals import tsc_proposals_to_store
from tal_pipeline.stages.bapg.scales import Scales
from tal_pipeline.stages.bapg.similarity import write_similarity
from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.stages.evaluation.variant import Variant
from tal_pipeline.storage.features import read_features, write_features
from tal_pipeline.storage.zarr_store import ArtifactStore

GRID = TimeGrid(fps=8.0, window=4, stride=4)  # 2 steps per second
TRUE = [20, 35, 60, 70]  # regime changes of the video below
SPURIOUS = 45  # a change point inside the regime [35, 60)
ALL = list(GROUPS)


def _video(T=90, D=16, seed=0) -> np.ndarray:
    """Steps in regimes A [0, 20), B [20, 35), A [35, 60), C [60, 70), A [70, 90), plus noise: (T, D)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 0, 2, 0], np.diff([0, *TRUE, T]))
    return (rng.normal(size=(3, D))[labels] + 0.4 * rng.normal(size=(T, D))).astype(np.float32)


@pytest.fixture
def stores(tmp_path):
    """Features, their similarity and a proposals store whose change points are TRUE plus SPURIOUS at two scales
    (the oracle source, with ground truth made to give exactly those steps)."""
    paths = {k: str(tmp_path / f"{k}.zarr") for k in ("features", "similarity", "proposals")}
    for p in paths.values():
        ArtifactStore(p).begin({"stage": "t", "params": {}})
    x = _video()
    write_features(paths["features"], "v", x, GRID)
    write_similarity(paths["similarity"], "v", x, GRID, block=32)
    half = GRID.step_seconds / 2
    gt = np.array([[GRID.to_seconds(a) - half, GRID.to_seconds(b - 1) + half]
                   for a, b in ((20, 35), (SPURIOUS, 60), (60, 70))])
    tsc_proposals_to_store("v", store_path=paths["proposals"], source="oracle", features_store=paths["features"],
                           scales=Scales(ms=[3, 5]), gt_seconds={"v": gt})
    return paths, x


def _stage(paths, tmp_path, groups, name="b"):
    out = str(tmp_path / f"{name}.zarr")
    ArtifactStore(out).begin({"stage": "t", "params": {}})
    proposal_features_to_store("v", features_store=paths["features"], proposals_store=paths["proposals"],
                               store_path=out, projection_dim=8, groups=groups, similarity_store=paths["similarity"])
    return read_features(out, "v")[0], dict(ArtifactStore(out).read("v").attrs)


def _block(B, attrs, group):
    blocks = [b for b in attrs["channel_groups"] if b["group"] == group]
    return np.concatenate([B[:, b["start"]:b["stop"]] for b in blocks], axis=1), blocks


def test_novelty_peaks_at_the_true_boundaries_and_strength_ranks_them_above_a_spurious_one(stores, tmp_path):
    paths, _ = stores
    B, attrs = _stage(paths, tmp_path, ALL)
    assert attrs["groups"] == ALL and len(attrs["channel_names"]) == B.shape[1]
    novelty, [block] = _block(B, attrs, "novelty")
    assert block["scale"] is None and novelty.shape == (90, 3)
    assert attrs["channel_names"][block["start"]:block["stop"]] == [f"novelty of S, width {k}" for k in NOVELTY_WIDTHS]
    for w in range(3):
        curve = novelty[:, w]
        for b in TRUE:  # the largest value near each true boundary is exactly at it
            assert int(np.argmax(curve[b - 3:b + 4])) + b - 3 == b, (NOVELTY_WIDTHS[w], b)
        assert curve[SPURIOUS] < 0.2 * curve[TRUE].min()  # no boundary there
    strength, blocks = _block(B, attrs, "strength")
    assert [b["scale"] for b in blocks] == ["m=3", "m=5"] and strength.shape == (90, 2)
    for s in range(2):
        nonzero = np.flatnonzero(strength[:, s])
        assert nonzero.tolist() == sorted([*TRUE, SPURIOUS])  # the curve sits at the change points only
        assert strength[SPURIOUS, s] < 0.2 * strength[TRUE, s].min()
    # normalised: the MMD^2 under S between the two segments the change point separates, e.g. [20, 35) | [35, 45)
    S = ArtifactStore(paths["similarity"]).read("v")[...].astype(np.float64)
    L, R = slice(20, 35), slice(35, SPURIOUS)
    mmd = S[L, L].mean() + S[R, R].mean() - S[L, R].mean() - S[R, L].mean()
    assert strength[35, 0] == pytest.approx(mmd, rel=1e-5)


def test_default_groups_are_the_previous_b_and_a_prefix_of_all_groups(stores, tmp_path):
    paths, x = stores
    B, attrs = _stage(paths, tmp_path, ["boundary", "pooled"], "default")  # any order: the fixed one
    assert attrs["groups"] == list(DEFAULT_GROUPS)
    P = projection_matrix(16, 8, seed=0)
    cps = np.array(sorted([*TRUE, SPURIOUS]))
    one = np.concatenate([segment_pooling(x @ P, cps), boundary_channels(cps, 90)], axis=1)
    np.testing.assert_array_equal(B, np.concatenate([one, one], axis=1))  # two scales, the same change points
    assert B.shape == (90, 2 * (8 + 4))
    full, _ = _stage(paths, tmp_path, ALL, "all")
    np.testing.assert_array_equal(full[:, :B.shape[1]], B)


@pytest.mark.parametrize("groups, width", [(["pooled"], 2 * 8), (["boundary"], 2 * 4), (["novelty"], 3),
                                           (["strength"], 2), (["strength", "novelty"], 3 + 2),
                                           (["pooled", "boundary", "novelty", "strength"], 2 * 12 + 3 + 2)])
def test_group_selection_gives_the_expected_widths(stores, tmp_path, groups, width):
    paths, _ = stores
    B, attrs = _stage(paths, tmp_path, groups)
    assert B.shape == (90, width) and attrs["channel_groups"][-1]["stop"] == width
    assert attrs["groups"] == [g for g in GROUPS if g in groups]


def test_unknown_or_no_groups_are_refused(stores, tmp_path):
    paths, x = stores
    with pytest.raises(ValueError, match=r"unknown channel group\(s\) \['edges'\]; known: \['pooled', 'boundary', "
                                         r"'novelty', 'strength'\]"):
        _stage(paths, tmp_path, ["pooled", "edges"])
    with pytest.raises(ValueError, match="at least one channel group"):
        normalise_groups([])
    assert normalise_groups(["strength", "pooled", "pooled"]) == ("pooled", "strength")
    with pytest.raises(ValueError, match=r"\['novelty'\] need the similarity matrix"):
        boundary_aware_features(x, [("a", np.array([20]))], groups=["pooled", "novelty"])
    with pytest.raises(ValueError, match="need a similarity store"):
        proposal_features_to_store("v", features_store=paths["features"], proposals_store=paths["proposals"],
                                   store_path=str(tmp_path / "none.zarr"), groups=["strength"])


# -- the task graph ----------------------------------------------------------------------------------------------

@pytest.fixture
def configured(tmp_path):
    with CmdlineParser.global_instance(["ProposalFeatures", "--paths-workdir", str(tmp_path), "--no-lock"]):
        yield


@pytest.mark.parametrize("source, use_encoder", [("tsc", True), ("raw", False), ("random", True), ("oracle", True)])
def test_novelty_and_strength_require_the_similarity_of_the_source(configured, source, use_encoder):
    default = ProposalFeatures(source=source)
    assert set(default.requires()) == {"features", "proposals"}
    assert default.spec().groups == ("pooled", "boundary")
    assert ProposalFeatures(source=source, groups=["boundary", "pooled"]).output().path == default.output().path
    for groups in (["novelty"], ["pooled", "strength"]):
        task = ProposalFeatures(source=source, groups=groups)
        assert task.requires()["similarity"].use_encoder is use_encoder
        assert task.output().path != default.output().path
    assert "similarity" not in ProposalFeatures(source=source, groups=["pooled"]).requires()


def test_detector_groups_reach_proposal_features_the_recipe_and_the_variant(configured):
    task = TrainDetector(detector="afsd", bapg=True, bapg_groups=["strength", "pooled"])
    assert task.bapg_groups == ("pooled", "strength")
    assert task.requires()["bapg"].groups == ("pooled", "strength")
    assert task.inference_recipe().bapg.groups == ("pooled", "strength")
    assert task.run_variant().bapg_groups == ("pooled", "strength")
    assert TrainDetector(detector="afsd", bapg=True).inference_recipe().bapg.groups == DEFAULT_GROUPS
    assert task.output().path != TrainDetector(detector="afsd", bapg=True).output().path
    assert Detect(**task.variant()).requires()["model"].task_id == task.task_id
    # a baseline ignores the groups; the oracle's novelty comes from the encoder's similarity, so it embeds it
    assert TrainDetector(detector="afsd", bapg_groups=["novelty"]).output().path == \
        TrainDetector(detector="afsd").output().path
    oracle = TrainDetector(detector="afsd", bapg=True, bapg_source="oracle", bapg_groups=ALL)
    recipe = oracle.inference_recipe().bapg
    assert "encoder" in oracle.requires() and (recipe.use_encoder, recipe.block, recipe.groups) == (True, 1024,
                                                                                                   tuple(ALL))
    with pytest.raises(ValueError, match=r"unknown channel group\(s\) \['edges'\]"):
        TrainDetector(bapg=True, bapg_groups=["edges"])


def test_report_group_ablations_are_tsc_rows_with_their_own_key(configured):
    report = Report(detectors=["afsd"], seeds=2, ablation_seeds=1,
                    group_ablations=[["pooled"], ["boundary", "pooled"], ALL])
    variants = report.variants()
    assert len(variants) == len(set(variants))  # the default groups are the + BAPG row itself, once
    extra = [v for v in variants if v.bapg and not v.default_groups]
    assert extra == [Variant.of("afsd", True, "tsc", 0, bapg_groups=["pooled"]),
                     Variant.of("afsd", True, "tsc", 0, bapg_groups=ALL)]
    req = report.requires()
    for v in extra:
        assert req["evaluations"][v].bapg_groups == v.bapg_groups and req["evaluations"][v].bapg_source == "tsc"
    assert set(req["detections"]) == {Variant.of("afsd"), Variant.of("afsd", True)}  # the plots keep the main rows
    with pytest.raises(ValueError, match="unknown channel group"):
        Report(group_ablations=[["pooled"], ["bogus"]])


def test_report_ablation_groups_give_other_sources_other_groups(configured):
    report = Report(detectors=["afsd"], seeds=1, ablations=["oracle", "raw"], ablation_groups=[ALL])
    variants = report.variants()
    with_groups = [v for v in variants if v.bapg and not v.default_groups]
    assert with_groups == [Variant.of("afsd", True, "oracle", 0, bapg_groups=ALL),
                           Variant.of("afsd", True, "raw", 0, bapg_groups=ALL)]
    assert Variant.of("afsd", True, "oracle", 0) in variants  # the default-groups ablation rows stay
    req = report.requires()
    for v in with_groups:
        assert (req["evaluations"][v].bapg_source, req["evaluations"][v].bapg_groups) == (v.bapg_source, v.bapg_groups)
    assert Report(detectors=["afsd"], seeds=1, ablation_groups=[ALL]).variants() == \
        Report(detectors=["afsd"], seeds=1).variants()  # no --Report-ablations: no extra row
