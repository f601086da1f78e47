"""Boundary accuracy written by real TSCProposals runs (luigi subprocess, tiny synthetic dataset): the files, their
columns, and the oracle source's change points hitting every ground-truth boundary exactly."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tal_pipeline.stages.bapg.boundary_accuracy import boundary_accuracy_from_store, gt_boundary_steps
from tal_pipeline.stages.bapg.proposal_store import read_change_points
from tal_pipeline.storage.zarr_store import ArtifactStore
from tests.conftest import dataset_args, run_luigi

SMALL = ["--TrainEncoder-epochs", "2", "--TSCProposals-ms", "[2,4]", "--TSCProposals-rates", "[]",
         "--SampleFrames-size", "32"]
COLUMNS = ["subset", "scale", "tolerance", "tp", "n_pred", "n_true", "precision", "recall", "f1"]


def _gt(folder) -> dict[str, dict[str, np.ndarray]]:
    """{subset: {video: (G, 2) seconds}} of the synthetic annotations (every video has actions)."""
    db = json.loads((folder / "annotations.json").read_text())["database"]
    out: dict = {}
    for video, entry in db.items():
        segs = [a["segment"] for a in entry["annotations"]]
        out.setdefault(entry["subset"], {})[video] = np.asarray(segs, dtype=np.float64).reshape(-1, 2)
    return out


@pytest.fixture(scope="module")
def stores(tiny_synthetic, tmp_path_factory) -> dict:
    """TSCProposals of every boundary source (random requires tsc, hence the encoders and similarity)."""
    work = tmp_path_factory.mktemp("boundary_outputs")
    workdir = work / "runs"
    for source in ("random", "oracle", "raw"):
        result = run_luigi(["TSCProposals", "--TSCProposals-source", source, *SMALL,
                            *dataset_args(tiny_synthetic, workdir)], work)
        assert result.returncode == 0, result.stderr[-3000:]
    found = {}
    for path in workdir.glob("proposals-*.zarr"):
        store = ArtifactStore(path)
        assert store.is_complete()
        source = store.read(store.videos()[0]).attrs["source"]
        assert source not in found
        found[source] = path
    assert set(found) == {"tsc", "raw", "random", "oracle"}
    return {"paths": found, "data": tiny_synthetic, "work": work}


def test_every_source_writes_boundary_accuracy_for_both_subsets(stores):
    for source, path in stores["paths"].items():
        table = pd.read_csv(path / "boundary_accuracy.csv")
        assert list(table.columns) == COLUMNS, source
        assert json.loads((path / "boundary_accuracy.json").read_text()) == json.loads(
            table.to_json(orient="records"))
        # test and training subsets, scales in feature order, tolerances 1 and 2
        assert list(table[["subset", "scale", "tolerance"]].itertuples(index=False, name=None)) == [
            (subset, scale, k) for subset in ("test", "train") for scale in ("m=2", "m=4") for k in (1, 2)]
        if source != "oracle":  # 2 videos per subset, m change points each
            assert (table["n_pred"] == table["scale"].map({"m=2": 2 * 2, "m=4": 2 * 4})).all(), source
        assert ((table["tp"] <= table["n_pred"]) & (table["tp"] <= table["n_true"])).all()
        assert table.groupby(["subset", "scale"])["tp"].apply(lambda t: t.is_monotonic_increasing).all()


def test_oracle_hits_every_ground_truth_boundary(stores):
    path = stores["paths"]["oracle"]
    table = pd.read_csv(path / "boundary_accuracy.csv")
    assert (table["f1"] == 1.0).all() and (table["precision"] == 1.0).all() and (table["recall"] == 1.0).all()
    for subset, gt in _gt(stores["data"]).items():
        rows = table[table["subset"] == subset]
        n_true = 0
        for video, segs in gt.items():  # per video, not only the micro average
            one = boundary_accuracy_from_store(str(path), {video: segs}, (1,))
            assert (one["f1"] == 1.0).all() and (one["n_true"] > 0).all(), (video, one)
            attrs = read_change_points(str(path), video)[1]
            n_true += len(gt_boundary_steps(segs, attrs["num_steps"], attrs["fps"], attrs["window"],
                                            attrs["stride"]))
        assert (rows["n_true"] == n_true).all()  # every boundary of the subset's videos counted once


def test_random_keeps_tsc_counts_and_only_the_oracle_is_perfect(stores):
    tables = {s: pd.read_csv(p / "boundary_accuracy.csv").set_index(["subset", "scale", "tolerance"])
              for s, p in stores["paths"].items()}
    assert (tables["random"]["n_true"] == tables["tsc"]["n_true"]).all()
    assert (tables["random"]["n_pred"] == tables["tsc"]["n_pred"]).all()  # random keeps TSC's counts
    for source in ("tsc", "raw", "random"):
        assert (tables[source]["f1"] < 1.0).any(), source  # only the oracle is perfect on these videos


def test_report_reads_the_files_and_refuses_a_store_without_them(stores, tmp_path):
    import shutil

    from luigi.cmdline_parser import CmdlineParser

    from pipeline.base import ZarrStoreTarget
    from pipeline.report_tasks import Report

    older = tmp_path / stores["paths"]["oracle"].name
    shutil.copytree(stores["paths"]["oracle"], older)
    for name in ("boundary_accuracy.csv", "boundary_accuracy.json"):
        (older / name).unlink()
    args = ["Report", *dataset_args(stores["data"], stores["work"] / "runs"), "--no-lock"]
    with CmdlineParser.global_instance(args):
        report = Report()
        written = report.boundary_accuracy({s: ZarrStoreTarget(stores["paths"][s])
                                            for s in ("tsc", "raw", "random", "oracle")})
        with pytest.raises(FileNotFoundError, match=r"boundary_accuracy.json is missing from the oracle proposals"):
            report.boundary_accuracy({"oracle": ZarrStoreTarget(older)})
    assert list(written["sources"]) == ["tsc", "raw", "random", "oracle"]
    assert written["subsets"] == {"test": "test", "train": "train"}
    assert written["sources"]["oracle"]["test"]["m=4"]["1"]["f1"] == 1.0
    tsc = pd.read_csv(stores["paths"]["tsc"] / "boundary_accuracy.csv").iloc[0]
    assert written["sources"]["tsc"][tsc["subset"]][tsc["scale"]][str(tsc["tolerance"])]["tp"] == tsc["tp"]
