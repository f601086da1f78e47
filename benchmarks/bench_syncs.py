"""Training steps per second before and after the host-sync work of issue 28 (loss terms kept on the device, the
EMA in fused multi-tensor kernels, batch-at-once triplet sampling, one host copy of TadTR's matching costs, no
per-call syncs in AFSD's boundary pooling), old and new code paired in one run.

    PYTHONPATH=. python benchmarks/bench_syncs.py [--old-ref f9a7734] [--rounds 3] [--epochs 6] [--threads 1]

The old code is `git archive` of --old-ref in a temporary folder, imported through a shim in place of the
installed package. Each round runs every workload in one fresh process per code version, old and new
alternating within a round and their order alternating between rounds, so a change in the machine's load hits
both. A detector
workload is train_detector on 8 synthetic videos (256-d features, 250-300 steps, the pipeline's default model and
recipe but --epochs epochs); the encoder's is train_encoder on 8 videos of 1024-d features (12 iterations an
epoch, batch 112). Steps per second are timed from the end of the first epoch to the end of the last (the
on_epoch callback both versions call), so set-up, the first epoch's warm-up and the health check are left out;
in the process's CPU time (one torch thread: what the steps cost, little moved by other processes on a shared
machine) and in wall time. Figures: median over rounds (min-max); "new / old" is the median of the per-round
ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = ("afsd", "actionformer", "tridet", "tadtr", "encoder")


def _worker(workload: str, epochs: int, threads: int) -> None:
    """Run one workload in this process (old or new code, whichever `tal_pipeline` imports); print its JSON."""
    import torch

    from tests.synthetic_features import synthetic_feature_dataset

    torch.set_num_threads(threads)
    stamps: list[tuple[float, float]] = []
    on_epoch = lambda done, total: stamps.append((time.perf_counter(), time.process_time()))  # noqa: E731
    channels = 1024 if workload == "encoder" else 256
    feats, ann, labels, grid, _ = synthetic_feature_dataset(num_videos=8, channels=channels, num_classes=4,
                                                            min_len=250, max_len=300)
    if workload == "encoder":
        from tal_pipeline.stages.bapg.encoder import train_encoder

        _, cfg, rows = train_encoder(feats, ann, grid, {"epochs": epochs, "iterations_per_epoch": 12}, seed=0,
                                     device="cpu", progress=False, on_epoch=on_epoch)
    else:
        from tal_pipeline.stages.detectors.training import train_detector

        _, cfg, rows = train_detector(workload, feats, ann, labels, grid, {"epochs": epochs}, seed=0, device="cpu",
                                      progress=False, on_epoch=on_epoch)
    steps = len(rows) // epochs * (epochs - 1)
    print(json.dumps({"workload": workload, "wall": steps / (stamps[-1][0] - stamps[0][0]),
                      "cpu": steps / (stamps[-1][1] - stamps[0][1]),
                      "module": sys.modules["tal_pipeline.stages.runtime"].__file__}), flush=True)


def _shim(old_tree: Path) -> Path:
    """A folder whose `tal_pipeline` and `tests` are the old tree's (PYTHONPATH wins over the editable install)."""
    shim = old_tree.parent / "shim"
    (shim / "tal_pipeline").mkdir(parents=True)
    for name in ("stages", "models", "storage", "synthetic"):
        (shim / "tal_pipeline" / name).symlink_to(old_tree / name)
    (shim / "tests").symlink_to(old_tree / "tests")
    return shim


def _run(workloads: list[str], shim: Path | None, args) -> dict[str, dict]:
    """Every workload in one process of the old (shim) or new code -> {workload: {"wall", "cpu"} steps/s}."""
    env = {**os.environ, "PYTHONPATH": str(shim) if shim else str(REPO)}
    out = subprocess.run([sys.executable, __file__, "--worker", ",".join(workloads), "--epochs", str(args.epochs),
                          "--threads", str(args.threads)], env=env, cwd=str(shim or REPO), capture_output=True,
                         text=True, timeout=3000)
    if out.returncode:
        raise RuntimeError(f"{'old' if shim else 'new'} code: {out.stderr[-2000:]}")
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    expect = str(shim) if shim else str(REPO)
    if not all(r["module"].startswith(expect) for r in results):
        raise RuntimeError(f"imported {results[0]['module']}, not the code under {expect}")
    return {r["workload"]: r for r in results}


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old-ref", default="f9a7734", help="git commit of the code before the change")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        for workload in args.worker.split(","):
            _worker(workload, args.epochs, args.threads)
        return
    workloads = args.workloads.split(",")
    with tempfile.TemporaryDirectory(prefix="bench_syncs_") as tmp:
        archive = Path(tmp) / "old.tar"
        subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), args.old_ref], check=True)
        old_tree = Path(tmp) / "old"
        with tarfile.open(archive) as tar:
            tar.extractall(old_tree, filter="data")
        shim = _shim(old_tree)
        old, new = [], []
        for r in range(args.rounds):
            for which in ((shim, None) if r % 2 == 0 else (None, shim)):
                (old if which else new).append(_run(workloads, which, args))
    print(f"old: {args.old_ref}; new: this working tree; {args.rounds} rounds, {args.epochs} epochs, "
          f"{args.threads} torch thread(s); steps/s median over rounds (min-max)\n")
    print("| workload | old steps/s (CPU time) | new steps/s (CPU time) | new / old (CPU) | new / old (wall) |\n"
          "|---|---|---|---|---|")
    for w in workloads:
        ratio = {k: statistics.median(n[w][k] / o[w][k] for n, o in zip(new, old)) for k in ("cpu", "wall")}
        print(f"| {w} | {_cell([o[w]['cpu'] for o in old])} | {_cell([n[w]['cpu'] for n in new])} | "
              f"{ratio['cpu']:.2f}x | {ratio['wall']:.2f}x |")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        main()
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _readme import run_recorded  # benchmarks/_readme.py: this script's section of benchmarks/README.md

        run_recorded("bench_syncs", main)
