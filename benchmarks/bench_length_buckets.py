"""Detector training with length-bucketed batches (`length_bucket`, stages.detectors.data.epoch_batches) against
plain random batches, side by side in one process, on the THUMOS14-shaped benchmark's training videos.

    PYTHONPATH=. python benchmarks/bench_length_buckets.py [--data runs/data/thumos_like] [--detector actionformer]
        [--bucket 4] [--epochs 4] [--rounds 2] [--threads 1]

Prints, for both settings, the padded / real feature steps of an epoch's batches (what collate feeds the model)
and the seconds per epoch, measured between the training loop's epoch callbacks (the first epoch and the
post-training health check left out), alternating the two settings `--rounds` times so that a change in the
machine's load hits both. The benchmark is written by `tal-pipeline synth --features DIR` when DIR lacks it.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def padding_ratio(lengths: np.ndarray, batch_size: int, bucket: int, epochs: int = 50) -> float:
    """Padded steps / real steps over `epochs` epochs of batches (before the random crop, which keeps 90-100 %)."""
    from tal_pipeline.stages.detectors.data import epoch_batches

    rng = np.random.default_rng(0)
    padded = real = 0
    for _ in range(epochs):
        for batch in epoch_batches(lengths, batch_size, bucket, rng):
            padded += len(batch) * int(lengths[batch].max())
            real += int(lengths[batch].sum())
    return padded / real


def epoch_seconds(name: str, data: tuple, bucket: int, epochs: int) -> float:
    """Median seconds per epoch of one training run (epochs 2..N, between the epoch callbacks)."""
    from tal_pipeline.stages.detectors.training import train_detector

    feats, actions, labels, grid = data
    stamps: list[float] = []
    cfg = {"epochs": epochs, "warmup_epochs": 0, "length_bucket": bucket}
    train_detector(name, feats, actions, labels, grid, cfg, seed=0, device="cpu", progress=False,
                   on_epoch=lambda done, total: stamps.append(time.perf_counter()))
    return float(np.median(np.diff(stamps)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO / "runs" / "data" / "thumos_like"))
    ap.add_argument("--detector", default="actionformer")
    ap.add_argument("--bucket", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tal_pipeline.stages.data.timegrid import TimeGrid
    from tal_pipeline.stages.detectors.training import resolve_train_config
    from tal_pipeline.storage.annotations import load_annotations

    data = Path(args.data)
    if not (data / "annotations.json").is_file():
        subprocess.run([sys.executable, "-m", "pipeline.cli", "synth", "--features", str(data)], check=True, cwd=REPO)
    train = load_annotations(data / "annotations.json").subset("validation")
    videos = train.videos["video"].tolist()
    feats = {v: np.load(data / "features" / f"{v}.npy") for v in videos}
    grid = TimeGrid(30.0, 16, 4)  # the benchmark's THUMOS14 I3D grid (its README.txt)
    lengths = np.array([len(feats[v]) for v in videos])
    batch_size = resolve_train_config(args.detector)["batch_size"]
    print(f"{args.detector} on {len(videos)} training videos of {lengths.min()}-{lengths.max()} steps "
          f"(median {int(np.median(lengths))}), batch {batch_size}, {args.threads} thread(s)")
    for bucket in (0, args.bucket):
        print(f"length_bucket {bucket}: padded / real steps {padding_ratio(lengths, batch_size, bucket):.2f}")
    times: dict[int, list[float]] = {0: [], args.bucket: []}
    for _ in range(args.rounds):
        for bucket in (0, args.bucket):
            times[bucket].append(epoch_seconds(args.detector, (feats, train.actions, train.labels, grid), bucket,
                                               args.epochs))
    plain, bucketed = np.median(times[0]), np.median(times[args.bucket])
    for bucket, label in ((0, "random batches"), (args.bucket, f"length_bucket {args.bucket}")):
        print(f"{label:18s}: {np.median(times[bucket]):.2f} s/epoch (runs: "
              f"{', '.join(f'{t:.2f}' for t in times[bucket])})")
    print(f"speed-up {plain / bucketed:.2f}x")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_length_buckets", main)  # --no-readme: print only
