"""What a real THUMOS14 run costs: seconds per epoch and peak memory of each detector's training at its published
THUMOS14 I3D recipe (stages/detectors/published_recipes.py: whole videos up to the recipe's max_seq_len, its batch
size, width and model options), through the pipeline's own training loop (stages.detectors.training).

    PYTHONPATH=. python benchmarks/bench_published_recipes.py [--detectors actionformer tridet tadtr afsd]
        [--threads 2] [--length 2304] [--videos 4] [--device cpu]

Each detector runs in a child process of its own (its peak RSS is its own): `--videos` random 2,048-d feature
videos of `--length` steps (cropped or cut into windows by the recipe, as in the reference; the "steps" column
is the recipe's max_seq_len),
a few random actions each, trained for 2 epochs with the training health check skipped. The second epoch's time
over its iterations gives seconds per iteration; an epoch of THUMOS14 is its 200 validation videos, so it takes
200 / --videos times the second epoch's iterations (TadTR's epoch is every 128-step window of every video, one
every 32 steps). Every THUMOS14 video is taken at the full length, so the epoch figure is an upper bound (the
median THUMOS14 video is ~1,500 steps on the I3D grid).
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

THUMOS14_TRAIN_VIDEOS = 200  # the validation subset the references train on


def _videos(n: int, length: int, channels: int = 2048, classes: int = 20, seed: int = 0):
    """n random (length, channels) videos, 3-6 actions each, on the THUMOS14 I3D grid (30 fps, 16 / 4)."""
    import numpy as np
    import pandas as pd

    from tal_pipeline.stages.data.timegrid import TimeGrid

    rng = np.random.default_rng(seed)
    grid = TimeGrid(30.0, 16, 4)
    seconds = length * 4 / 30.0
    feats, rows = {}, []
    for i in range(n):
        name = f"video_{i:03d}"
        feats[name] = rng.normal(size=(length, channels)).astype(np.float32)
        for _ in range(int(rng.integers(3, 7))):
            start = float(rng.uniform(0, 0.9 * seconds))
            rows.append({"video": name, "label": f"class{int(rng.integers(classes))}", "start": start,
                         "end": min(seconds, start + float(rng.uniform(2, 10)))})
    return feats, pd.DataFrame(rows), [f"class{k}" for k in range(classes)], grid


def one(detector: str, length: int, videos: int, threads: int, device: str) -> dict:
    """Train `detector` at its published THUMOS14 recipe for 2 epochs; the figures of the second."""
    import torch

    from tal_pipeline.stages.detectors import training
    from tal_pipeline.stages.detectors.recipes import recipe_entry
    from tal_pipeline.stages.presets import get_preset

    torch.set_num_threads(threads)
    entry = recipe_entry("published", get_preset("thumos14"), detector)
    config = {**entry["train"], "model": entry["model"], "epochs": 2, "warmup_epochs": 1}
    feats, actions, labels, grid = _videos(videos, length)
    marks: list[float] = []
    training.training_health = lambda *a, **k: {"healthy": None, "problems": []}  # not what is timed here
    t0 = time.perf_counter()
    _, cfg, rows = training.train_detector(detector, feats, actions, labels, grid, config, device=device,
                                           progress=False, on_epoch=lambda done, total: marks.append(
                                               time.perf_counter()))
    per_epoch = [r for r in rows if r["epoch"] == max(r["epoch"] for r in rows)]
    seconds_per_iteration = (marks[-1] - marks[-2]) / max(1, len(per_epoch))
    iterations = math.ceil(len(per_epoch) * THUMOS14_TRAIN_VIDEOS / videos)
    return {"detector": detector, "length": int(cfg["max_seq_len"]),
            "batch": int(cfg["train"]["batch_size"]),
            "s_per_iteration": seconds_per_iteration, "iterations_per_epoch": iterations,
            "s_per_epoch": seconds_per_iteration * iterations,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "wall_s": time.perf_counter() - t0, "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detectors", nargs="+", default=["actionformer", "tridet", "tadtr", "afsd"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--length", type=int, default=2304)
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # the child process: one detector, JSON out
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.length, args.videos, args.threads, args.device)))
        return
    print(f"published THUMOS14 recipes, {args.videos} videos of up to {args.length} steps x 2,048 channels, "
          f"2 epochs (the second timed), device {args.device}, {args.threads} threads")
    print(f"{'detector':13s} {'steps':>5s} {'batch':>5s} {'s/iteration':>11s} {'iter/epoch':>10s} "
          f"{'THUMOS14 epoch':>14s} {'peak RSS':>9s}")
    for det in args.detectors:
        cmd = [sys.executable, __file__, "--one", det, "--threads", str(args.threads), "--length",
               str(args.length), "--videos", str(args.videos), "--device", args.device,
               "--no-readme"]  # the child prints one JSON line; only the parent records its section
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if out.returncode:
            print(f"{det:13s} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{det:13s} {r['length']:5d} {r['batch']:5d} {r['s_per_iteration']:10.2f}s "
              f"{r['iterations_per_epoch']:10d} {r['s_per_epoch'] / 60:11.1f} min {r['peak_rss_gib']:7.2f} GiB",
              flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _readme import run_recorded  # benchmarks/_readme.py: this script's section of benchmarks/README.md

    run_recorded("bench_published_recipes", main)
