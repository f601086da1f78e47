"""`tal-pipeline plan` and `tal-pipeline gc`, run as the installed commands from outside the checkout on one tiny
chain (tests/test_cli_installed.py's CHAIN_FLAGS: 3 synthetic videos of 10 s, one epoch, one detector), in order:

1. half a run (`run TSCProposals`): `plan FullRun` lists the right done / to-run split, and runs nothing;
2. the FullRun: luigi finds as complete and runs exactly what plan said; the TensorBoard events of every encoder
   and detector run are in their folders, with Evaluate's mAP in the detector's;
3. a changed parameter (detector epochs 1 -> 2) and its FullRun: gc is refused while that run holds the workdir;
   `gc --dry-run` lists exactly the stale detector, detections, evaluation and report folders (the untrained
   detector's keep their paths: epochs do not shape it; and a crashed writer's temporary), deleting nothing;
   `gc` removes exactly those and nothing else (a user's file, a link to outside); the next FullRun then
   recomputes nothing.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pipeline.commands.gc import split_keeps
from pipeline.workdir_lock import lock_path
from tests.conftest import BIN
from tests.test_cli_installed import CHAIN_FLAGS, installed, ok, outside_env

pytestmark = pytest.mark.slow

CHANGED = [("2" if prev == "--TrainDetector-epochs" else a) for prev, a in zip([None, *CHAIN_FLAGS], CHAIN_FLAGS)]
# what a changed detector setting leaves stale: every folder downstream of the trained detectors
STALE_KINDS = ("detector", "detections", "evaluation", "report")


def untrained(folder: Path) -> bool:
    """Whether a detector, detections or evaluation folder is an untrained run's (whose spec has no epochs)."""
    for file, key in (("evaluation.json", "variant"), ("detections.json", "external_data"), ("config.json", "spec")):
        if (folder / file).is_file():
            return bool(json.loads((folder / file).read_text()).get(key, {}).get("untrained"))
    return False


def plan(cwd: Path, *flags: str) -> dict:
    return json.loads(ok(installed("tal-pipeline", "plan", "FullRun", *flags, "--json", cwd=cwd)).stdout)


def listed(lines: list[str], verb: str) -> set[str]:
    """Names of the entries gc's lines `<verb> <path>  <size>  (<why>)` name."""
    return {Path(ln[len(verb):].split()[0]).name for ln in lines if ln.startswith(verb + " ")}


def entries(workdir: Path) -> set[str]:
    return {p.name for p in workdir.iterdir()}


def mtimes(workdir: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}


def luigi_counts(stderr: str) -> tuple[int, int, int]:
    """(scheduled, complete ones encountered, ran successfully) from luigi's execution summary."""
    def number(pattern: str) -> int:
        found = re.search(pattern, stderr)
        return int(found.group(1)) if found else 0
    return (number(r"Scheduled (\d+) tasks"), number(r"\* (\d+) complete ones were encountered"),
            number(r"\* (\d+) ran successfully"))


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict:
    cwd = tmp_path_factory.mktemp("plan_gc")
    ok(installed("tal-pipeline", "run", "TSCProposals", *CHAIN_FLAGS, cwd=cwd, timeout=600))
    return {"cwd": cwd, "workdir": cwd / "runs", "half": entries(cwd / "runs")}


def test_plan_on_a_half_finished_workdir_shows_done_and_to_run(chain):
    cwd, workdir = chain["cwd"], chain["workdir"]
    before = mtimes(workdir)
    got = plan(cwd, *CHAIN_FLAGS)
    assert got["workdir"] == "runs" and got["done"] == 8 and got["to_run"] == 16
    # TSCProposals' chain is done: the dataset, frames, features, the encoder and its two cross-fitting folds, the
    # encoder's similarity and the tsc proposals; the rest of FullRun is to run
    assert {s: c["done"] for s, c in got["stages"].items() if c["done"]} == {
        "SyntheticDataset": 1, "SampleFrames": 1, "ExtractFeatures": 1, "TrainEncoder": 3, "SimilarityMatrices": 1,
        "TSCProposals": 1}
    assert {s: c["to_run"] for s, c in got["stages"].items() if c["to_run"]} == {
        "TrainDetector": 3, "Detect": 3, "Evaluate": 3, "SimilarityMatrices": 1, "TSCProposals": 3,
        "ProposalFeatures": 1, "Report": 1, "FullRun": 1}
    for task in got["tasks"]:
        on_disk = [Path(cwd, p).exists() for p in task["paths"]]
        assert all(on_disk) if task["done"] else not any(on_disk), task
        assert (task["bytes"] > 0) == task["done"] or task["stage"] == "FullRun", task
    assert {Path(p).name for t in got["tasks"] if t["done"] for p in t["paths"]} == chain["half"]
    assert mtimes(workdir) == before and entries(workdir) == chain["half"]  # nothing ran
    text = ok(installed("tal-pipeline", "plan", "FullRun", *CHAIN_FLAGS, cwd=cwd)).stdout.splitlines()
    assert text[0].startswith("FullRun: 24 tasks in runs: 8 done, 16 to run (")
    done_lines = [ln.split() for ln in text if ln.startswith("  done ")]
    assert sorted(f[1] for f in done_lines) == sorted(t["stage"] for t in got["tasks"] if t["done"])
    assert ["TrainDetector", "0", "3"] in [ln.split() for ln in text]  # the table of counts per stage


def test_plan_imports_no_torch_and_refuses_force(chain):
    code = ("import sys; from pipeline.cli import main; rc = main(['plan', 'FullRun', *sys.argv[1:]]); "
            "assert 'torch' not in sys.modules, 'plan imported torch'; sys.exit(rc)")
    proc = subprocess.run([str(BIN / "python"), "-c", code, *CHAIN_FLAGS], cwd=chain["cwd"], env=outside_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    refused = installed("tal-pipeline", "plan", "TSCProposals", *CHAIN_FLAGS, "--TSCProposals-force",
                        cwd=chain["cwd"])
    assert refused.returncode == 2 and "--TSCProposals-force" in refused.stderr
    assert entries(chain["workdir"]) == chain["half"]  # the forced store is still there


@pytest.fixture(scope="module")
def full(chain) -> dict:
    proc = ok(installed("tal-pipeline", "run", "FullRun", *CHAIN_FLAGS, cwd=chain["cwd"], timeout=600))
    return {**chain, "proc": proc, "first": entries(chain["workdir"])}


def test_the_run_does_what_plan_said(full):
    scheduled, complete, ran = luigi_counts(full["proc"].stderr)
    # luigi runs the 16 that plan listed to run (FullRun included); it asks no further than the first complete
    # task of a chain, so it encounters only some of plan's 8 done ones
    assert ran == 16 and scheduled - complete == 16 and 0 < complete <= 8
    got = plan(full["cwd"], *CHAIN_FLAGS)
    assert got["to_run"] == 0 and got["done"] == 24
    assert {Path(p).name for t in got["tasks"] for p in t["paths"]} == full["first"]


def scalars(folder: Path) -> dict[str, list]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def test_every_training_run_has_its_tensorboard_events(full):
    workdir = full["workdir"]
    for folder in sorted(workdir.glob("detector-*")):
        tags = scalars(folder)
        rows = (folder / "train_log.csv").read_text().splitlines()[1:]
        trained = json.loads((folder / "config.json").read_text())["iterations"] > 0
        assert len(tags.get("train/total", [])) == len(rows) and (len(rows) > 0) == trained, folder
        assert {"evaluation/average_mAP", "evaluation/mAP@0.5"} <= set(tags), folder  # Evaluate, same run
        assert "health/loss_ratio" in tags, folder
        if trained:
            assert {"train/lr", "train/grad_norm", "train/ema_decay", "throughput/steps_per_s"} <= set(tags), folder
    for folder in sorted(workdir.glob("encoder-*")):
        tags = scalars(folder)
        rows = (folder / "loss_log.csv").read_text().splitlines()[1:]
        assert len(tags["train/loss"]) == len(rows) > 0 and "separation/after/gap" in tags, folder
    # the README's `tensorboard --logdir runs/` finds every run (--inspect: the same discovery, no server)
    proc = ok(installed("tensorboard", "--inspect", "--logdir", "runs/", cwd=full["cwd"], timeout=120))
    found = set(re.findall(r"^These tags are in runs/(\S+):$", proc.stdout, flags=re.MULTILINE))
    assert found == {p.name for p in workdir.glob("*") if p.name.startswith(("detector-", "encoder-"))}


@pytest.fixture(scope="module")
def changed(full) -> dict:
    """The FullRun after a changed detector setting, with gc tried while that run holds the workdir."""
    cwd, workdir = full["cwd"], full["workdir"]
    run = subprocess.Popen([str(BIN / "tal-pipeline"), "run", "FullRun", *CHANGED], cwd=cwd, env=outside_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not _held(lock_path(workdir)) and time.time() < deadline and run.poll() is None:
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGSTOP)  # keep the run (and its hold on the workdir) in place while gc tries
    try:
        refused = installed("tal-pipeline", "gc", *CHANGED, cwd=cwd)
        during = entries(workdir)
    finally:
        os.kill(run.pid, signal.SIGCONT)
    _, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-3000:]
    return {**full, "refused": refused, "during": during}


def _held(lock: Path) -> bool:
    """Whether another process holds the workdir (our exclusive attempt fails); released at once if not."""
    if not lock.exists():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def test_gc_is_refused_while_a_run_holds_the_workdir(changed):
    assert changed["refused"].returncode == 3, changed["refused"].stderr[-2000:]
    assert "in use by a pipeline run" in changed["refused"].stderr
    assert changed["first"] <= changed["during"]  # nothing removed


def test_gc_removes_exactly_the_unreachable_artifacts_and_the_next_run_recomputes_nothing(changed, tmp_path):
    cwd, workdir, first = changed["cwd"], changed["workdir"], changed["first"]
    stale = {e for e in first if e.split("-")[0] in STALE_KINDS and e != "report" and not untrained(workdir / e)}
    assert len(stale) == 2 + 2 + 2 + 1  # 2 trained detector runs (with / without BAPG) and the report
    temporary = workdir / ".detector-0123456789.abcdef12.tmp"  # a crashed writer's
    temporary.mkdir()
    (workdir / "notes.txt").write_text("mine")  # not an artifact: never touched
    outside = tmp_path / "detector-fedcba9876"
    outside.mkdir()
    (workdir / outside.name).symlink_to(outside)  # a link to outside the workdir: neither followed nor removed
    before = entries(workdir)
    dry = ok(installed("tal-pipeline", "gc", *CHANGED, "--dry-run", cwd=cwd)).stdout.splitlines()
    gone = listed(dry, "would remove")
    assert gone == stale | {temporary.name}
    assert entries(workdir) == before  # --dry-run deletes nothing
    assert dry[-1].startswith(f"gc: would remove {len(gone)} entries, ")
    wet = ok(installed("tal-pipeline", "gc", *CHANGED, cwd=cwd)).stdout.splitlines()
    assert listed(wet, "removed") == gone
    assert entries(workdir) == before - gone and outside.is_dir() and (workdir / "notes.txt").is_file()
    (workdir / outside.name).unlink()
    (workdir / "notes.txt").unlink()
    kept = mtimes(workdir)
    rerun = ok(installed("tal-pipeline", "run", "FullRun", *CHANGED, cwd=cwd))
    assert "ran successfully" not in rerun.stderr and luigi_counts(rerun.stderr)[:2] == (1, 1), rerun.stderr[-2000:]
    assert mtimes(workdir) == kept


def test_gc_keeps_the_union_of_several_graphs(changed):
    cwd, workdir = changed["cwd"], changed["workdir"]
    keep = [["Evaluate"], ["Evaluate", "--bapg"]]
    reachable = set()
    for task, *flags in keep:
        got = json.loads(ok(installed("tal-pipeline", "plan", task, *CHANGED, *flags, "--json", cwd=cwd)).stdout)
        reachable |= {Path(p).name for t in got["tasks"] for p in t["paths"]}
    argv = [*CHANGED, "--dry-run", *[a for k in keep for a in ("--keep", *k)]]
    dry = ok(installed("tal-pipeline", "gc", *argv, cwd=cwd)).stdout.splitlines()
    assert listed(dry, "would remove") == entries(workdir) - reachable


def test_split_keeps():
    assert split_keeps(["--a", "1", "--keep", "A", "--y", "--keep", "B", "--dry-run"]) == (
        [["A", "--a", "1", "--y"], ["B", "--a", "1"]], True)
    assert split_keeps(["--a", "1"]) == ([["FullRun", "--a", "1"]], False)
    with pytest.raises(ValueError, match="--keep needs a task name"):
        split_keeps(["--keep", "--a"])


def test_gc_help_and_bad_keep(tmp_path):
    assert "--keep TASK" in ok(installed("tal-pipeline", "gc", "--help", cwd=tmp_path)).stdout
    bad = installed("tal-pipeline", "gc", "--keep", cwd=tmp_path)
    assert bad.returncode == 2 and "--keep needs a task name" in bad.stderr
