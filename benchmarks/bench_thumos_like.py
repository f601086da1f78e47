"""BAPG on the project's THUMOS14-shaped feature benchmark: FullRun with ablations, then the report's figures.

    PYTHONPATH=. python benchmarks/bench_thumos_like.py [--data runs/data/thumos_like] [--workdir runs/thumos_like]
        [--detectors actionformer afsd] [--seeds 3] [--ablations raw random oracle] [--ablation-seeds 1]
        [--group-ablations '[["pooled", "boundary", "novelty", "strength"]]'] [--encoder-options '{"context": 5}']
        [--luigi-args "--actionformer-train '{\"epochs\": 30}'"]

1. Writes the benchmark (`tal-pipeline synth --features DIR`: 60 validation / 40 test videos of THUMOS14 shape,
   up to 240 s, 256-d features on the THUMOS14 I3D grid) unless DIR already holds it.
2. Runs `luigi --module pipeline FullRun` on it (ImportFeatures -> encoder -> similarity -> TSC -> boundary-aware
   features -> detectors with and without BAPG over seeds -> the ablation rows -> report).
3. Prints TSC proposal recall and each boundary source's change-point F1 on the test videos, the results table,
   the paired differences (+BAPG - baseline, same detector and seed) at tIoU 0.7 and on average, and the health of
   every run, from report.json. --group-ablations adds +BAPG rows with other channel groups of B
   (`--Report-group-ablations`); --encoder-options sets the encoder's options for every encoder of the run
   (`--TrainEncoder-options`, stages/bapg/encoder_options.py).
Nothing here reads the test split to choose anything: the settings are the pipeline's defaults unless given.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def encoder_flags(options: str) -> list[str]:
    """--encoder-options JSON as luigi flags: the keys with a TrainEncoder flag of their own (margin, epochs, ...)
    as that flag, the others as --TrainEncoder-options."""
    from pipeline.specs import ENCODER_FLAGS

    given = json.loads(options) if options else {}
    flags = [f for k in ENCODER_FLAGS if k in given for f in (f"--TrainEncoder-{k}", str(given[k]))]
    rest = {k: v for k, v in given.items() if k not in ENCODER_FLAGS}
    return flags + (["--TrainEncoder-options", json.dumps(rest)] if rest else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="runs/data/thumos_like")
    ap.add_argument("--workdir", default="runs/thumos_like")
    ap.add_argument("--detectors", nargs="+", default=["actionformer"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ablations", nargs="*", default=["raw", "random", "oracle"])
    ap.add_argument("--ablation-seeds", type=int, default=1)
    ap.add_argument("--group-ablations", default="", help="JSON list of group lists (--Report-group-ablations)")
    ap.add_argument("--encoder-options", default="", help="JSON over the encoder config (--TrainEncoder-options)")
    ap.add_argument("--luigi-args", default="", help="more luigi options (detector settings, TSC rates, ...)")
    args = ap.parse_args()

    data = Path(args.data)
    if not (data / "annotations.json").is_file():
        subprocess.run([sys.executable, "-m", "pipeline.cli", "synth", "--features", str(data)], check=True, cwd=REPO)
    cmd = [sys.executable, "-m", "luigi", "--module", "pipeline", "FullRun",
           "--dataset-features", str(data / "features"), "--dataset-annotations", str(data / "annotations.json"),
           "--dataset-train-subset", "validation", "--dataset-test-subset", "test", "--paths-workdir", args.workdir,
           "--detectors-recipe", "small",  # the benchmark's recipes: small data (auto would pick published)
           "--Report-detectors", json.dumps(args.detectors), "--Report-seeds", str(args.seeds),
           "--Report-ablations", json.dumps(args.ablations), "--Report-ablation-seeds", str(args.ablation_seeds),
           *(["--Report-group-ablations", args.group_ablations] if args.group_ablations else []),
           *encoder_flags(args.encoder_options),
           *shlex.split(args.luigi_args)]
    print("$ " + shlex.join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode:
        print(run.stderr[-4000:])
        raise SystemExit(f"FullRun failed (exit {run.returncode})")
    report = json.loads((REPO / args.workdir / "report" / "report.json").read_text())
    print(f"FullRun on {data}: {wall / 60:.1f} min (cached stages are not recomputed)\n")
    print("TSC proposal recall, test videos:")
    for scale, r in report["proposal_recall"].items():
        print(f"  {scale:>8}: recall@0.5 {r['recall@0.5']:.3f}  recall@0.7 {r['recall@0.7']:.3f}  "
              f"AR@100 {r['AR@100']:.3f}  proposals/video {r['proposals_per_video']:.0f}")
    accuracy = report.get("boundary_accuracy") or {}
    if accuracy.get("sources"):
        print("\nchange-point F1 at +-1 / +-2 steps against the ground-truth boundaries, test videos:")
        for source, entry in accuracy["sources"].items():
            f1 = {scale: [c.get(k, {}).get("f1", float("nan")) for k in ("1", "2")]
                  for scale, c in entry.get("test", {}).items()}
            cells = [f"{scale} {a:.3f} / {b:.3f}" for scale, (a, b) in f1.items()]
            print(f"  {source:>8}: " + "   ".join(cells))
    print("\naverage mAP (tIoU 0.3:0.1:0.7), mean ± std over seeds; mAP@0.7:")
    for row in report["results"]:
        h = row.get("health", {})
        print(f"  {row.get('name', row['detector']):55s} {100 * row['average_mAP'][0]:5.1f} ± "
              f"{100 * row['average_mAP'][1]:4.1f}   @0.7 {100 * row['mAP']['0.7'][0]:5.1f} ± "
              f"{100 * row['mAP']['0.7'][1]:4.1f}   healthy {h.get('healthy_runs', '?')}/{len(row['seeds'])}")
    print("\npaired differences (+BAPG - baseline, same seed), mAP points:")
    for pair in report.get("paired_differences", []):
        d7, da = pair["mAP"]["0.7"], pair["average_mAP"]
        if d7["n"]:
            print(f"  {pair['variant']:55s} @0.7 {100 * d7['mean']:+5.1f} ± {100 * d7['std']:4.1f} "
                  f"({d7['improved']}/{d7['n']})   avg {100 * da['mean']:+5.1f} ± {100 * da['std']:4.1f} "
                  f"({da['improved']}/{da['n']})")
    health = report.get("health", {})
    print(f"\nhealth: {health.get('healthy', '?')} of {health.get('runs', '?')} runs healthy")
    for bad in health.get("unhealthy_runs", []):
        print(f"  unhealthy: {bad}")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_thumos_like", main)  # --no-readme: print only
