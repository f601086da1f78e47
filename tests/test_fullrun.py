"""The whole chain through the real `luigi` command on a tiny synthetic dataset: report, artifacts, no-op rerun."""
import json
import shutil

import pytest

from tal_pipeline.storage.zarr_store import ArtifactStore
from tests.conftest import dataset_args, run_luigi

SMALL = ["--SampleFrames-size", "32", "--Report-seeds", "1", "--TrainDetector-epochs", "2",
         "--TrainEncoder-epochs", "2", "--TSCProposals-ms", "[2,4]", "--TSCProposals-rates", "[]"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_synthetic):
    tmp = tmp_path_factory.mktemp("fullrun")
    data = tmp / "data"
    shutil.copytree(tiny_synthetic, data)
    workdir = tmp / "runs"
    args = ["FullRun", *dataset_args(data, workdir), *SMALL]
    first = run_luigi(args, tmp)
    assert first.returncode == 0, first.stderr[-3000:]
    return tmp, workdir, args, first


def test_fullrun_writes_report_with_documented_schema(full_run):
    _, workdir, _, _ = full_run
    report = json.loads((workdir / "report" / "report.json").read_text())
    rows = {(r["detector"], r["bapg"], r["untrained"]) for r in report["results"]}
    assert rows == {(d, b, False) for d in ("afsd", "actionformer") for b in (False, True)} | \
        {("afsd", False, True), ("actionformer", False, True)}  # + the untrained sanity rows
    for r in report["results"]:
        assert r["seeds"] == [0]
        assert list(r["mAP"]) == ["0.3", "0.4", "0.5", "0.6", "0.7"]
        assert all(len(v) == 2 and 0.0 <= v[0] <= 1.0 and v[1] == 0.0 for v in r["mAP"].values())
        assert r["average_mAP"][0] == pytest.approx(sum(v[0] for v in r["mAP"].values()) / 5)
        # Health from each run's TrainDetector health.json: checked when trained, not checked (None) when untrained.
        assert [p["healthy"] is None for p in r["health"]["per_seed"]] == [r["untrained"]]
    assert set(report["proposal_recall"]) == {"m=2", "m=4", "all"}
    # Boundary accuracy of every boundary source, from its TSCProposals store (no ablation detector was trained)
    accuracy = report["boundary_accuracy"]
    assert list(accuracy["sources"]) == ["tsc", "raw", "random", "oracle"] and accuracy["tolerances"] == [1, 2]
    for entry in accuracy["sources"].values():
        assert (workdir / entry["store"] / "boundary_accuracy.csv").is_file()
        for split in ("test", "train"):
            assert list(entry[split]) == ["m=2", "m=4"] and all(set(c) == {"1", "2"} for c in entry[split].values())
    assert all(c["f1"] == 1.0 for split in ("test", "train")
               for cells in accuracy["sources"]["oracle"][split].values() for c in cells.values())
    assert {"before", "after", "features"} <= set(report["encoder"])
    assert report["plots"] and all((workdir / "report" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
                                   for p in report["plots"])
    md = (workdir / "report" / "report.md").read_text()
    assert "actionformer + BAPG" in md and "Proposal recall" in md
    assert "| oracle | m=4 | 1.000 (1.00 / 1.00) |" in md


def test_fullrun_artifacts_complete_and_consistent(full_run):
    _, workdir, _, _ = full_run
    every = [ArtifactStore(p) for p in workdir.glob("*.zarr")]
    assert all(s.is_complete() for s in every)
    kinds = [s.path.name.split("-")[0] for s in every]
    # The Report's boundary accuracy adds the raw features' similarity and the raw, random and oracle proposals.
    assert sorted(kinds) == sorted(["frames", "features", "similarity", "similarity", "proposals", "proposals",
                                    "proposals", "proposals", "bapg_features"])
    params = {s.path: s.attrs()["params"]["params"] for s in every}
    stores = {s.path.name.split("-")[0]: s for s in every  # the method's chain: encoder similarity, tsc proposals
              if params[s.path].get("use_encoder", True) and params[s.path].get("source", "tsc") == "tsc"}
    assert set(stores) == {"frames", "features", "similarity", "proposals", "bapg_features"}
    videos = stores["features"].videos()
    assert stores["similarity"].videos() == videos == stores["bapg_features"].videos()
    for video in videos:
        T = stores["features"].read(video).shape[0]
        assert stores["similarity"].read(video).shape == (T, T)
        # +BAPG input = (m = 2, 4) x (128 projected pooled channels + 4 boundary channels)
        assert stores["bapg_features"].read(video).shape == (T, 2 * 132)
    assert (stores["proposals"].path / "recall.csv").is_file()
    ann = json.loads((workdir.parent / "data" / "annotations.json").read_text())["database"]
    # Cross-fitting: each training video is embedded by the encoder of the fold that left it out, test videos
    # by the encoder trained on every training video.
    encoders = {v: stores["similarity"].read(v).attrs["embedding"] for v in videos}
    train = sorted(v for v in videos if ann[v]["subset"] == "train")
    test = [v for v in videos if ann[v]["subset"] == "test"]
    assert len({encoders[v] for v in test}) == 1 and len({encoders[v] for v in train}) == 2
    assert not {encoders[v] for v in train} & {encoders[v] for v in test}
    for video in train:
        trained_on = json.loads((workdir / encoders[video].split()[-1] / "config.json").read_text())["train_videos"]
        fold = train.index(video) % 2
        assert video not in trained_on and trained_on == [v for i, v in enumerate(train) if i % 2 != fold]
    full = json.loads((workdir / encoders[test[0]].split()[-1] / "config.json").read_text())["train_videos"]
    assert full == train
    for folder in workdir.glob("evaluation-*"):
        assert "health" not in json.loads((folder / "evaluation.json").read_text())  # the Report reads health.json
    for folder in workdir.glob("detections-*"):
        assert "health" not in json.loads((folder / "detections.json").read_text())["external_data"]
        results = json.loads((folder / "detections.json").read_text())["results"]
        assert set(results) == {v for v, d in ann.items() if d["subset"] == "test"}
        for video, dets in results.items():
            assert all(0.0 <= d["segment"][0] < d["segment"][1] <= ann[video]["duration"] + 1e-9 for d in dets)


def test_fullrun_second_run_does_nothing(full_run):
    tmp, workdir, args, _ = full_run
    before = {p: p.stat().st_mtime_ns for p in workdir.rglob("DONE")}
    again = run_luigi(args, tmp)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "ran successfully" not in again.stderr and "complete ones were encountered" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in workdir.rglob("DONE")} == before


def test_fullrun_log_is_plain_text_without_progress_bars(full_run):
    # A log file is not a terminal: no carriage-return redraws, no per-iteration lines; progress goes to luigi's
    # channel instead (tests/test_progress.py).
    _, _, _, first = full_run
    log = first.stdout + first.stderr
    assert "\r" not in log
    assert "it/s" not in log and "s/it" not in log and "train actionformer" not in log
    assert len(log.splitlines()) < 2000  # ~14 tasks, a few lines each, however many iterations they train
