"""SimilarityMatrices, TSCProposals (store layer), ProposalFeatures and the report, on small known inputs."""
import json

import numpy as np
import pandas as pd
import pytest
import zarr

from tal_pipeline.stages.bapg.proposal_features import (
    boundary_aware_features,
    boundary_channels,
    projection_matrix,
    segment_pooling,
)
from tal_pipeline.stages.bapg.proposal_recall import recall_table_from_store
from tal_pipeline.stages.bapg.proposal_scoring import score_proposals
from tal_pipeline.stages.bapg.proposal_store import read_change_points, read_proposals
from tal_pipeline.stages.bapg.proposal_table import proposals_from_change_points
from tal_pipeline.stages.bapg.proposals import tsc_proposals_to_store
from tal_pipeline.stages.bapg.scales import Scales
from tal_pipeline.stages.bapg.similarity import similarity_matrix, similarity_tiles, write_similarity
from tal_pipeline.stages.bapg.tsc import change_points
from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.stages.evaluation.report import aggregate_results, results_markdown, write_report
from tal_pipeline.stages.evaluation.variant import Variant
from tal_pipeline.storage.zarr_store import ArtifactStore
from tests.reference_similarity import cosine_similarity_matrix

GRID = TimeGrid(fps=8.0, window=16, stride=4)


def _regimes(T=53, D=16, k=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(0, k, size=T))
    return rng.normal(size=(k, D))[labels] + 0.3 * rng.normal(size=(T, D))


@pytest.mark.parametrize("block", [8, 16, 1024])
def test_similarity_tiles_symmetric_unit_diagonal_equal_cosine(block):
    x = _regimes()
    S = similarity_matrix(x, block=block)
    assert S.dtype == np.float16 and S.shape == (53, 53)
    assert np.array_equal(S, S.T)  # exactly symmetric, whatever the tiling
    assert np.all(np.diag(S) == 1.0)
    np.testing.assert_allclose(S.astype(np.float64), cosine_similarity_matrix(x), atol=1e-3)


def test_similarity_refuses_zero_and_nan_rows():
    x = _regimes()
    x[7] = 0.0
    with pytest.raises(ValueError, match=r"'vid'.*zero embedding.*step 7"):
        list(similarity_tiles(x, 8, video="vid"))
    x[7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        similarity_matrix(x)


def test_similarity_store_is_tiled_plain_zarr(tmp_path):
    x = _regimes(T=40)
    store = tmp_path / "similarity.zarr"
    ArtifactStore(store).begin({"stage": "similarity", "params": {}})
    write_similarity(store, "v1", x, GRID, block=16)
    array = zarr.open_group(str(store), mode="r")["v1"]  # readable without the project
    assert array.shape == (40, 40) and array.chunks == (16, 16) and array.dtype == np.float16
    assert array.attrs["symmetric"] is True and array.attrs["fps"] == 8.0
    np.testing.assert_array_equal(array[...], similarity_matrix(x, block=16))


def test_tsc_proposals_store_roundtrip_and_recall(tmp_path):
    x = _regimes(T=60)
    sim, props = tmp_path / "similarity.zarr", tmp_path / "proposals.zarr"
    for p in (sim, props):
        ArtifactStore(p).begin({"stage": "t", "params": {}})
    write_similarity(sim, "v1", x, GRID, block=16)
    tsc_proposals_to_store("v1", similarity_store=str(sim), store_path=str(props), scales=Scales(ms=[2, 4]),
                           max_union=2, durations={"v1": 30.0})
    cps, attrs = read_change_points(str(props), "v1")
    S = ArtifactStore(sim).read("v1")[...]
    expected = change_points(S, ms=[2, 4])
    assert set(cps) == {2, 4} and all(np.array_equal(cps[m], expected[m]) for m in cps)
    table = read_proposals(str(props), "v1")
    ref = proposals_from_change_points(expected, 60, GRID, duration=30.0, max_union=2)
    assert ref["score"].isna().all()  # from change points alone: unscored, rank = row order
    pd.testing.assert_frame_equal(table, score_proposals(ref, S), check_dtype=True)
    assert table["score"].is_monotonic_decreasing and len(table) == len(ref)
    assert table["end"].max() <= 30.0
    # A ground truth equal to the first segment of m=2 is recalled at every tIoU.
    first = ref[(ref["m"] == 2) & (ref["n_segments"] == 1)].iloc[0]
    recall = recall_table_from_store(str(props), {"v1": np.array([[first["start"], first["end"]]])})
    row = recall.set_index("scale").loc["m=2"]
    assert row["recall@0.7"] == 1.0 and row["AR@100"] == 1.0


def test_segment_pooling_known_answer():
    f = np.array([[1, 0], [3, 0], [0, 2], [0, 4], [0, 6], [5, 5]], dtype=np.float32)  # (T=6, C=2)
    pooled = segment_pooling(f, np.array([2, 5]))  # segments [0,2) [2,5) [5,6)
    assert pooled.dtype == np.float32 and pooled.shape == (6, 2)
    np.testing.assert_allclose(pooled, [[2, 0], [2, 0], [0, 4], [0, 4], [0, 4], [5, 5]])
    # the relative position in the segment is the first boundary channel
    np.testing.assert_allclose(boundary_channels(np.array([2, 5]), 6)[:, 0], [0.25, 0.75, 1 / 6, 0.5, 5 / 6, 0.5])
    with pytest.raises(ValueError, match="not ascending"):
        segment_pooling(f, np.array([3, 3]))


def test_boundary_aware_features_layout_and_projection():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(12, 8)).astype(np.float32)
    cps = {3: np.array([2, 5, 9]), 1: np.array([6])}
    B = boundary_aware_features(f, cps)
    assert B.shape == (12, 2 * (8 + 4))
    # m ascending: m=1 first; its pooled part over [0, 6) equals the mean of the first 6 steps
    np.testing.assert_allclose(B[0, :8], f[:6].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(B[:, 8], (np.r_[np.arange(6), np.arange(6)] + 0.5) / 6)
    # the scales may also come as an ordered list [(name, change points)]: same layout, in list order
    np.testing.assert_array_equal(boundary_aware_features(f, [("a", cps[1]), ("b", cps[3])]), B)
    P = projection_matrix(8, 3, seed=1)
    np.testing.assert_allclose(P.T @ P, np.eye(3), atol=1e-5)  # orthonormal columns
    Bp = boundary_aware_features(f, cps, projection_dim=3, seed=1)
    assert Bp.shape == (12, 2 * (3 + 4))
    np.testing.assert_allclose(Bp[0, :3], (f @ P)[:6].mean(axis=0), rtol=1e-4, atol=1e-6)


def _evaluation(detector, bapg, seed, maps):
    return {"variant": Variant.of(detector, bapg, seed=seed).record(), "thresholds": [0.3, 0.5, 0.7],
            "mAP": maps, "average_mAP": float(np.mean(maps)), "report": {"mode": "anet", "max_dets": 200}}


def test_report_aggregates_seeds_and_writes_files(tmp_path):
    evals = [_evaluation("afsd", False, 0, [0.5, 0.4, 0.3]), _evaluation("afsd", False, 1, [0.7, 0.6, 0.5]),
             _evaluation("afsd", True, 0, [0.9, 0.8, 0.7])]
    rows = aggregate_results(evals)
    assert [(r["detector"], r["bapg"], r["seeds"]) for r in rows] == [("afsd", False, [0, 1]), ("afsd", True, [0])]
    assert rows[0]["mAP"]["0.3"] == pytest.approx([0.6, 0.1])
    assert rows[0]["average_mAP"] == pytest.approx([0.5, 0.1])
    assert rows[1]["mAP"]["0.7"] == pytest.approx([0.7, 0.0])
    assert "| afsd + BAPG | 1 | 90.0 ± 0.0" in results_markdown(rows)
    recall = [{"scale": "m=10", "n_gt": 4, "recall@0.5": 0.5}, {"scale": "all", "n_gt": 4, "recall@0.5": 0.75}]
    encoder = {"before": {"positive": 0.5, "hard_negative": 0.45, "easy_negative": 0.1, "gap": 0.05},
               "after": {"positive": 0.9, "hard_negative": 0.2, "easy_negative": 0.0, "gap": 0.7}}
    payload = write_report(tmp_path, evals, recall, encoder)
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(payload))
    assert on_disk["proposal_recall"]["all"]["recall@0.5"] == 0.75
    assert on_disk["evaluation"]["thresholds"] == [0.3, 0.5, 0.7]
    md = (tmp_path / "report.md").read_text()
    assert "afsd + BAPG" in md and "| after training | 0.900 | 0.200" in md
