"""Peak memory of the post-training health check (stages/detectors/health.py) at THUMOS14 scale: 200 training
videos of 1,500 feature steps on average (~200 s at I3D's 7.5 steps a second; lengths drawn from 150 to 6,000),
ActionFormer at the pipeline's recipe (max_seq_len 256), on the CPU.

    PYTHONPATH=. python benchmarks/bench_health_memory.py [--videos 200] [--channels 1024] [--threads 1]

Each mode runs in a fresh process, which prints its peak RSS (the high-water mark) after building the training
set and model ("before") and after the health check ("after"):
- batched (now): training_health as it is, a batch of at most HEALTH_BATCH_WINDOWS windows of one video collated
  when it is used;
- all at once (before): every window of every video collated first and held, as the check did until now
  (the old code's list of batches), then the same check.
The features are the items the training loop holds anyway; the check's own cost is after - before.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import numpy as np


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_mode(mode: str, videos: int, channels: int, threads: int) -> None:
    import torch

    from tal_pipeline.models.detector_registry import build_detector, resolve_model_config
    from tal_pipeline.stages.detectors.data import VideoItem, collate, crop_item, window_starts
    from tal_pipeline.stages.detectors.health import training_health
    from tal_pipeline.stages.detectors.training import resolve_train_config

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(np.log(1200), 0.6, videos), 150, 6000).astype(int)
    items = []
    for v, t in enumerate(lengths):
        starts = rng.uniform(0, t - 40, 4)
        segs = np.stack([starts, starts + rng.uniform(10, 40, 4)], 1).astype(np.float32)
        items.append(VideoItem(f"video_{v:03d}", rng.standard_normal((t, channels), dtype=np.float32), segs,
                               rng.integers(0, 20, 4)))
    cfg = resolve_train_config("actionformer")
    torch.manual_seed(0)
    model = build_detector("actionformer", channels, 20, resolve_model_config("actionformer", {}))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    dev = torch.device("cpu")
    before = rss_gib()
    held = []
    if mode == "all-at-once":
        size = cfg["max_seq_len"]
        held = [collate([crop_item(it, s0, min(size, len(it.features)))
                         for s0 in window_starts(len(it.features), min(size, len(it.features)))], dev) for it in items]
    t0 = time.perf_counter()
    training_health(model, initial, items, [{"epoch": 0, "total": 1.0}], cfg, dev)
    seconds, after = time.perf_counter() - t0, rss_gib()
    print(f"{mode:>12}: {len(items)} videos, {int(lengths.sum())} steps x {channels} channels; peak RSS before "
          f"{before:.2f} GiB, after {after:.2f} GiB (+{after - before:.2f}); check {seconds:.0f} s; "
          f"{len(held)} batches held")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--channels", type=int, default=1024, help="1024: this pipeline's RGB I3D; 2048 with flow")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", choices=["batched", "all-at-once"], help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.mode:
        run_mode(args.mode, args.videos, args.channels, args.threads)
        return
    import torch

    print(f"torch {torch.__version__}, threads={args.threads}; ActionFormer (the pipeline's recipe), a fresh "
          "process per mode")
    for mode in ("batched", "all-at-once"):
        out = subprocess.run([sys.executable, __file__, "--no-readme", "--mode", mode, "--videos", str(args.videos),
                              "--channels", str(args.channels), "--threads", str(args.threads)],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip())


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: this script's section of benchmarks/README.md

    run_recorded("bench_health_memory", main)  # --no-readme: print only
