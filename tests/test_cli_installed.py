"""Every `tal-pipeline` command, and the README's newcomer path, run as the INSTALLED commands from OUTSIDE the
checkout: cwd is a temporary folder, PYTHONPATH and LUIGI_CONFIG_PATH are unset, so nothing of the repository
is importable from the current directory and only what the installation ships is used.

Why: `tal-pipeline classify` once read `importlib.resources.files("models")`, which works in-process from the
repository root (where the folder models/ is importable from the current directory) and fails with
`ModuleNotFoundError: No module named 'models'` for a user. In-process tests (pipeline.cli.main) cannot see
such a defect; these tests can.

The newcomer path (README): `luigi --module pipeline FullRun` in an empty folder (the built-in synthetic
dataset, default workdir ./runs), open runs/report/report.md, rerun one stage with --<Task>-force, inspect a
store, detect on a video. One chain, run once per module with the smallest settings (3 videos of 10 s, one
epoch, one detector), is shared by those tests. tests/test_fullrun.py checks the full chain's artifacts in
depth (both detectors, through conftest.run_luigi); here the point is the installed commands, from outside.

The chain and `detect` load the real I3D weights from the user's cache (fetched once, as tests/test_fullrun.py
does); `classify` runs on random weights written by `weights --from` into a cache of its own (TAL_PIPELINE_CACHE),
whose top-5 is known, so it needs no real data (the real model against the reference logits: tests/test_i3d.py).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BIN, REPO

# The chain of the newcomer path, as small as it runs: 3 synthetic videos (2 train, 1 test) of 10 s at 32 px,
# one epoch of the encoder and of the detector, one detector, one seed, two fixed TSC scales.
CHAIN_FLAGS = ["--synthetic-videos", "3", "--synthetic-seed", "3", "--synthetic-duration", "10",
               "--synthetic-size", "32", "--SampleFrames-size", "32", "--Report-seeds", "1",
               "--Report-detectors", '["actionformer"]', "--TrainEncoder-epochs", "1", "--TrainDetector-epochs", "1",
               "--TSCProposals-ms", "[2,4]", "--TSCProposals-rates", "[]"]


# ----------------------------------------------------------------------------- running installed commands

def outside_env(**extra: str) -> dict:
    """The user's environment without what would make the checkout importable or configure luigi from it."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "LUIGI_CONFIG_PATH"}}
    env.update(extra)
    return env


def installed(program: str, *args: str, cwd: Path, env: dict | None = None,
              timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the console script `program` (tal-pipeline, luigi) of this environment in `cwd`, outside the checkout."""
    cwd = Path(cwd).resolve()
    assert not cwd.is_relative_to(REPO), f"{cwd} is inside the checkout {REPO}"
    env = env if env is not None else outside_env()
    assert "PYTHONPATH" not in env
    return subprocess.run([str(BIN / program), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {folder}, found {found}"
    return found[0]


def method_store(folder: Path, kind: str) -> Path:
    """The one `kind` store (similarity, proposals) of the method's chain: the encoder's similarity, the tsc
    proposals (the Report's boundary accuracy adds the raw features' similarity and the other sources' proposals)."""
    from tal_pipeline.storage.zarr_store import ArtifactStore

    found = []
    for path in sorted(folder.glob(f"{kind}-*.zarr")):
        params = ArtifactStore(path).attrs()["params"]["params"]
        if params.get("use_encoder", True) and params.get("source", "tsc") == "tsc":
            found.append(path)
    assert len(found) == 1, f"expected one {kind} store of the method in {folder}, found {found}"
    return found[0]


def bad_input(proc: subprocess.CompletedProcess, *words: str) -> None:
    """A refused input: exit 2, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """An empty folder outside the checkout from which the checkout's folders are not importable."""
    folder = tmp_path_factory.mktemp("outside")
    probe = subprocess.run([str(BIN / "python"), "-c", "import models"], cwd=folder, env=outside_env(),
                           capture_output=True, text=True)
    assert "No module named 'models'" in probe.stderr, "the test folder sees the checkout's models/: no check"
    return folder


# ----------------------------------------------------------------------------- the newcomer path (one chain)

@pytest.fixture(scope="module")
def chain(tmp_path_factory, outside) -> dict:
    """`luigi --module pipeline FullRun` in an empty folder: the synthetic dataset, workdir ./runs."""
    cwd = tmp_path_factory.mktemp("newcomer")
    proc = installed("luigi", "--module", "pipeline", "FullRun", *CHAIN_FLAGS, cwd=cwd, timeout=600)
    ok(proc)
    return {"cwd": cwd, "workdir": cwd / "runs", "proc": proc}


def test_newcomer_fullrun_writes_the_report_under_runs(chain):
    assert "This progress looks :)" in chain["proc"].stderr
    report = chain["workdir"] / "report"
    md = (report / "report.md").read_text()
    results = json.loads((report / "report.json").read_text())["results"]
    assert {(r["detector"], r["bapg"], r["untrained"]) for r in results} == {
        ("actionformer", False, False), ("actionformer", True, False), ("actionformer", False, True)}
    assert "| method | seeds | mAP@0.3 | mAP@0.4 | mAP@0.5 | mAP@0.6 | mAP@0.7 | avg | healthy |" in md
    results_table = md.split("| method | seeds | mAP@0.3", 1)[1].split("\n\n", 1)[0]  # up to the blank line
    rows = {line.split(" | ")[0][2:]: line for line in results_table.splitlines() if line.startswith("| actionformer")}
    for r in results:  # the table shows the numbers of report.json, in percent
        row = rows[r["name"]]
        mean, std = r["average_mAP"]
        assert 0.0 <= mean <= 1.0 and f"**{100 * mean:.1f} ± {100 * std:.1f}**" in row, row
        assert f"| {100 * r['mAP']['0.3'][0]:.1f} ± {100 * r['mAP']['0.3'][1]:.1f} |" in row, row
    assert "Proposal recall" in md and "| m=2 |" in md and "| m=4 |" in md


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _change_points(store: Path) -> dict[str, dict]:
    from tal_pipeline.storage.zarr_store import ArtifactStore

    s = ArtifactStore(store)
    return {v: s.read(v).attrs["change_points"] for v in sorted(s.videos())}


def test_newcomer_reruns_one_stage_with_force(chain):
    workdir = chain["workdir"]
    proposals, similarity = method_store(workdir, "proposals"), method_store(workdir, "similarity")
    before, upstream, points = _mtimes(proposals), _mtimes(similarity), _change_points(proposals)
    proc = ok(installed("luigi", "--module", "pipeline", "TSCProposals", *CHAIN_FLAGS, "--TSCProposals-force",
                        cwd=chain["cwd"]))
    assert f"--force: removed runs/{proposals.name}" in proc.stderr or f"--force: removed {proposals}" in proc.stderr
    assert "* 1 ran successfully:\n    - 1 TSCProposals(" in proc.stderr, proc.stderr[-2000:]
    assert method_store(workdir, "proposals") == proposals  # same parameters, same artifact path
    after = _mtimes(proposals)
    assert "zarr.json" in after and all(after[f] != before[f] for f in before.keys() & after.keys())
    assert _mtimes(similarity) == upstream  # the stage's inputs are not recomputed
    assert _change_points(proposals) == points  # deterministic: the same change points again


def test_newcomer_inspects_the_proposals_store(chain, outside):
    from tal_pipeline.storage.zarr_store import ArtifactStore

    store = method_store(chain["workdir"], "proposals")
    proc = ok(installed("tal-pipeline", "inspect", store, "--json", cwd=outside))
    info = json.loads(proc.stdout)
    expected = ArtifactStore(store)
    assert info["complete"] is True and info["skipped"] == {}
    assert sorted(info["videos"]) == sorted(expected.videos()) == ["synth_0000", "synth_0001", "synth_0002"]
    assert info["attrs"]["params"]["params"]["scales"]["ms"] == [2, 4]
    for video, meta in info["videos"].items():
        array = expected.read(video)
        assert meta["shape"] == list(array.shape) and meta["shape"][1] == 7, meta["shape"]
        assert meta["attrs"]["columns"][:2] == ["start", "end"]
        assert {m: len(cps) for m, cps in meta["attrs"]["change_points"].items()} == {"2": 2, "4": 4}
    listing = ok(installed("tal-pipeline", "inspect", store, cwd=outside)).stdout.splitlines()
    assert listing[0] == f"{store}  complete=True  videos=3"


def test_newcomer_detects_on_a_video_like_the_pipeline(chain, tmp_path):
    workdir = chain["workdir"]
    data = one(workdir, "synthetic-*")
    database = json.loads((data / "annotations.json").read_text())["database"]
    (video,) = [v for v, d in database.items() if d["subset"] == "test"]
    detector = next(d for d in sorted(workdir.glob("detector-*"))
                    if json.loads((d / "config.json").read_text())["bapg"])
    proc = ok(installed("tal-pipeline", "detect", data / f"{video}.mp4", "--checkpoint", detector,
                        "--out", "results.json", cwd=tmp_path))
    assert "wrote results.json (1 video(s), 0 failed)" in proc.stderr
    payload = json.loads((tmp_path / "results.json").read_text())  # --out relative to the current directory
    assert payload["failures"] == {} and list(payload["results"]) == [video]
    ext = payload["external_data"]
    assert ext["bapg"] is True and ext["detector"] == "actionformer"
    assert ext["checkpoint"] == str((detector / "checkpoint.pt").resolve())
    mine = payload["results"][video]
    assert mine and all(0.0 <= d["segment"][0] < d["segment"][1] <= database[video]["duration"] + 1e-9 for d in mine)
    # the pipeline's own Detect task with this checkpoint gave the same detections
    ref = next(json.loads((d / "detections.json").read_text()) for d in sorted(workdir.glob("detections-*"))
               if json.loads((d / "detections.json").read_text())["external_data"]["bapg"])["results"][video]
    assert len(mine) == len(ref)
    for a, b in zip(mine, ref):
        assert a["label"] == b["label"]
        assert a["segment"] == pytest.approx(b["segment"], abs=1e-4)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)


def test_run_command_finds_the_finished_chain_complete(chain):
    dones = {p: p.stat().st_mtime_ns for p in chain["workdir"].rglob("DONE")}
    proc = ok(installed("tal-pipeline", "run", "FullRun", *CHAIN_FLAGS, cwd=chain["cwd"]))
    assert "complete ones were encountered" in proc.stderr and "ran successfully" not in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in chain["workdir"].rglob("DONE")} == dones
    failed = installed("tal-pipeline", "run", "NoSuchTask", cwd=chain["cwd"])
    assert failed.returncode != 0 and "NoSuchTask" in failed.stderr


def test_verify_finds_the_newcomer_chain_intact(chain):
    # Default target: the configured workdir (./runs); every store and artifact folder carries its checksums.
    proc = ok(installed("tal-pipeline", "verify", cwd=chain["cwd"]))
    workdir = chain["workdir"]
    artifacts = [p for p in workdir.iterdir() if p.suffix == ".zarr" or (p / "DONE").is_file()]
    assert f"{len(artifacts)} artifact(s) checked in runs: 0 damaged, 0 without checksums" in proc.stdout
    detector = sorted(workdir.glob("detector-*"))[0]
    report = json.loads(ok(installed("tal-pipeline", "verify", detector, "--json", cwd=chain["cwd"])).stdout)
    assert report == {"checked": [str(detector)], "damaged": [], "unverified": [], "repaired": []}
    assert "checkpoint.pt" in (detector / "SHA256SUMS").read_text()


# ----------------------------------------------------------------------------- the other commands

def test_config_reads_the_shipped_file_then_the_current_folder(tmp_path):
    shipped = Path(importlib.util.find_spec("pipeline").submodule_search_locations[0]) / "luigi.cfg"
    (tmp_path / "luigi.cfg").write_text("[TSCProposals]\nms = [3]\n")
    config = json.loads(ok(installed("tal-pipeline", "config", "--section", "TSCProposals", "--json",
                                     cwd=tmp_path)).stdout)
    files = [Path(f) for f in config["files"]]
    assert files[0] == shipped and (tmp_path / "luigi.cfg").resolve() in files
    assert REPO / "luigi.cfg" not in files  # a clone's own overrides are not read from elsewhere
    rows = {r["key"]: r for r in config["values"]}
    assert {r["section"] for r in config["values"]} == {"TSCProposals"}
    assert rows["ms"]["value"] == "[3]" and rows["ms"]["source"] == str((tmp_path / "luigi.cfg").resolve())
    assert rows["penalty"]["value"] == "0.0" and rows["penalty"]["source"] == str(shipped)
    bad_input(installed("tal-pipeline", "config", "--section", "NoSuchSection", cwd=tmp_path), "'NoSuchSection'")


def test_evaluate_scores_a_results_file(tmp_path):
    database = {"v1": {"subset": "test", "duration": 100.0, "annotations": [
        {"segment": [0, 10], "label": "A"}, {"segment": [20, 30], "label": "B"}]},
        "v2": {"subset": "validation", "duration": 50.0, "annotations": [{"segment": [1, 2], "label": "A"}]}}
    (tmp_path / "gt.json").write_text(json.dumps({"database": database}))
    results = {"v1": [{"segment": [0, 10], "label": "A", "score": 0.9},
                      {"segment": [20, 26], "label": "B", "score": 0.8}]}
    (tmp_path / "pred.json").write_text(json.dumps({"results": results}))
    out = json.loads(ok(installed("tal-pipeline", "evaluate", "--gt", "gt.json", "--pred", "pred.json",
                                  "--subset", "test", "--json", cwd=tmp_path)).stdout)
    # A exact; B has tIoU 6/10 = 0.6: a hit at 0.3..0.6, a miss at 0.7
    assert out["thresholds"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert out["per_class_AP"] == {"A": [1.0] * 5, "B": [1.0, 1.0, 1.0, 1.0, 0.0]}
    assert out["mAP"] == [1.0, 1.0, 1.0, 1.0, 0.5] and out["average_mAP"] == pytest.approx(0.9)
    (tmp_path / "bad.json").write_text('{"results": {"v1": [{"segment": [0, 1], "label": "A"}]}}')
    bad_input(installed("tal-pipeline", "evaluate", "--gt", "gt.json", "--pred", "bad.json", cwd=tmp_path),
              "bad.json", "missing key")


def test_segment_finds_the_blocks_of_a_similarity_matrix(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [12, 18, 10])  # blocks [0, 12), [12, 30), [30, 40)
    similarity = (labels[:, None] == labels[None, :]).astype(np.float64) + 0.05 * rng.random((40, 40))
    np.save(tmp_path / "sim.npy", (similarity + similarity.T) / 2)
    out = json.loads(ok(installed("tal-pipeline", "segment", "--similarity", "sim.npy", "--m", "0,2", "--json",
                                  cwd=tmp_path)).stdout)
    assert out == {"0": [], "2": [12, 30]}
    bad_input(installed("tal-pipeline", "segment", "--similarity", "missing.npy", cwd=tmp_path),
              "missing.npy", "not found")


@pytest.fixture(scope="module")
def synth_videos(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("synth")
    proc = ok(installed("tal-pipeline", "synth", "--out", "videos", "--videos", "2", "--duration", "10",
                        "--size", "32", "--seed", "1", cwd=cwd))
    return cwd / "videos", proc


def test_synth_writes_a_decodable_video_dataset(synth_videos):
    import av

    folder, proc = synth_videos
    assert proc.stdout.strip() == "videos/annotations.json"
    database = json.loads((folder / "annotations.json").read_text())["database"]
    assert sorted(database) == ["synth_0000", "synth_0001"]
    assert sorted(d["subset"] for d in database.values()) == ["test", "train"]
    for video, d in database.items():
        assert d["annotations"] and all(0 <= a["segment"][0] < a["segment"][1] <= d["duration"]
                                        for a in d["annotations"])
        with av.open(str(folder / f"{video}.mp4")) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert frames[0].shape == (32, 32, 3)
        assert len(frames) / d["fps"] == pytest.approx(d["duration"], abs=1.5 / d["fps"])


def test_synth_writes_the_feature_benchmark(tmp_path):
    ok(installed("tal-pipeline", "synth", "--features", "bench", "--videos-train", "1", "--videos-test", "1",
                 "--width", "64", "--max-duration", "10", "--seed", "2", cwd=tmp_path))
    database = json.loads((tmp_path / "bench" / "annotations.json").read_text())["database"]
    assert sorted(d["subset"] for d in database.values()) == ["test", "validation"]
    for video in database:
        features = np.load(tmp_path / "bench" / "features" / f"{video}.npy")
        assert features.ndim == 2 and features.shape[0] > 0 and features.shape[1] == 64
        assert np.isfinite(features).all()
    assert "luigi" in (tmp_path / "bench" / "README.txt").read_text()
    bad_input(installed("tal-pipeline", "synth", "--features", "x", "--width", "10", cwd=tmp_path), "width")


def test_synth_writes_the_activitynet_shaped_benchmark(tmp_path):
    proc = ok(installed("tal-pipeline", "synth", "--features", "anet", "--preset", "anet", "--videos", "5", "--width",
                        "16", "--seed", "3", cwd=tmp_path))
    assert proc.stdout.splitlines()[0] == "anet/annotations.json"
    payload = json.loads((tmp_path / "anet" / "annotations.json").read_text())
    assert len(payload["taxonomy"]) == 200 and payload["time_grid"] == {"fps": 15.0, "window": 16, "stride": 16}
    assert sorted(d["subset"] for d in payload["database"].values()) == ["testing", *["training"] * 3, "validation"]
    for video, d in payload["database"].items():
        assert 1 <= len(d["annotations"]) <= 2 and d["fps"] == 15.0
        features = np.load(tmp_path / "anet" / "features" / f"{video}.npy")
        assert features.shape == (d["feature_steps"], 16) and np.isfinite(features).all()
    assert "FullRun --dataset-preset anet --dataset-features" in (tmp_path / "anet" / "README.txt").read_text()
    bad_input(installed("tal-pipeline", "synth", "--features", "x", "--preset", "anet", "--videos-test", "3",
                        cwd=tmp_path), "--preset anet", "--videos-test")


# Random I3D weights whose logits are the bias alone, so the top-5 of any video is known: index -> logit.
TOP5_BIAS = {59: 10.0, 6: 9.0, 399: 8.0, 0: 7.0, 169: 6.0}


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> dict:
    """`tal-pipeline weights i3d-rgb-k400 --from random.pt` into a cache of its own (TAL_PIPELINE_CACHE)."""
    import torch

    from tal_pipeline.models.i3d import I3D

    tmp = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    sd = I3D().state_dict()
    sd["logits.conv3d.weight"].zero_()
    sd["logits.conv3d.bias"].zero_()
    for index, logit in TOP5_BIAS.items():
        sd["logits.conv3d.bias"][index] = logit
    torch.save(sd, tmp / "random.pt")
    env = outside_env(TAL_PIPELINE_CACHE=str(tmp / "cache"))
    proc = installed("tal-pipeline", "weights", "i3d-rgb-k400", "--from", tmp / "random.pt", cwd=tmp, env=env)
    return {"env": env, "proc": proc, "cached": tmp / "cache" / "weights" / "i3d_rgb_k400.pt", "cwd": tmp}


def test_weights_caches_a_state_dict_and_prints_its_path(random_weights):
    proc, cached = ok(random_weights["proc"]), random_weights["cached"]
    assert proc.stdout.strip() == str(cached)  # stdout is the path alone; progress goes to stderr
    assert "saved i3d-rgb-k400 weights" in proc.stderr
    recorded = (cached.parent / (cached.name + ".sha256")).read_text().split()[0]
    assert recorded == hashlib.sha256(cached.read_bytes()).hexdigest()


def test_classify_names_the_top5_with_the_shipped_labels(random_weights, synth_videos):
    # The defect this file was written for: the labels file must be read from the installed package.
    ok(random_weights["proc"])
    folder, _ = synth_videos
    proc = ok(installed("tal-pipeline", "classify", folder / "synth_0000.mp4", "--json", cwd=random_weights["cwd"],
                        env=random_weights["env"]))
    labels = [line.strip() for line in (REPO / "models" / "kinetics400_labels.txt").read_text().splitlines()
              if line.strip()]
    logits = np.zeros(400)
    logits[list(TOP5_BIAS)] = list(TOP5_BIAS.values())
    probs = np.exp(logits) / np.exp(logits).sum()
    assert "fetching" not in proc.stderr  # the verified cache of `weights`, no download
    top5 = json.loads(proc.stdout)["top5"]
    assert [row[:2] for row in top5] == [[labels[i], i] for i in TOP5_BIAS]
    assert [row[2] for row in top5] == pytest.approx([probs[i] for i in TOP5_BIAS], abs=1e-4)
    assert top5[2][0] == "zumba" and top5[3][0] == "abseiling"  # the first and the last label: no offset


# ----------------------------------------------------------------------------- every command is here

COMMAND_TESTS = {
    "classify": [test_classify_names_the_top5_with_the_shipped_labels],
    "config": [test_config_reads_the_shipped_file_then_the_current_folder],
    "detect": [test_newcomer_detects_on_a_video_like_the_pipeline],
    "evaluate": [test_evaluate_scores_a_results_file],
    # in tests/test_plan_gc.py (a chain of their own: gc deletes artifacts), named here as "module::test"
    "gc": ["tests.test_plan_gc::test_gc_removes_exactly_the_unreachable_artifacts_and_the_next_run_recomputes_nothing",
           "tests.test_plan_gc::test_gc_is_refused_while_a_run_holds_the_workdir"],
    "inspect": [test_newcomer_inspects_the_proposals_store],
    "plan": ["tests.test_plan_gc::test_plan_on_a_half_finished_workdir_shows_done_and_to_run"],
    "run": [test_run_command_finds_the_finished_chain_complete],
    "segment": [test_segment_finds_the_blocks_of_a_similarity_matrix],
    "synth": [test_synth_writes_a_decodable_video_dataset, test_synth_writes_the_feature_benchmark,
              test_synth_writes_the_activitynet_shaped_benchmark],
    "verify": [test_verify_finds_the_newcomer_chain_intact],
    "weights": [test_weights_caches_a_state_dict_and_prints_its_path],
}


def test_every_installed_command_has_a_test_here(outside):
    # A new module in pipeline/commands/ is a new command: it fails this test until it is run from outside here.
    proc = ok(installed("tal-pipeline", "--help", cwd=outside))
    listed = re.findall(r"^ {4}([a-z_-]+)  ", proc.stdout, flags=re.MULTILINE)  # "    classify  Kinetics-400 ..."
    assert set(listed) == set(COMMAND_TESTS), proc.stdout
    for ref in (t for tests in COMMAND_TESTS.values() for t in tests if isinstance(t, str)):
        module, name = ref.split("::")
        assert callable(getattr(importlib.import_module(module), name, None)), ref
