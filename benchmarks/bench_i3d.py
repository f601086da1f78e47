"""I3D feature-extraction throughput: batched extract_features vs a naive one-window-at-a-time loop.

    PYTHONPATH=. python benchmarks/bench_i3d.py [--quick] [--sizes 96 224] [--device cuda] [--precision fp16]

Prints windows/s and video-seconds/s (at --fps sampled frames per second, window 16, stride 4)
for each frame size, and the batched/naive speed ratio measured in the same run. Uses the real
Kinetics-400 weights (fetched and cached on first use); random frames (speed does not depend on content).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the reference extractor

from tal_pipeline.models.i3d_weights import load_i3d  # noqa: E402
from tal_pipeline.stages.data.features import extract_features  # noqa: E402
from tal_pipeline.stages.data.timegrid import num_windows  # noqa: E402
from tal_pipeline.stages.runtime import resolve_device  # noqa: E402
from tests.reference_features import extract_features_naive  # noqa: E402


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 112, 224])
    ap.add_argument("--seconds", type=float, default=None, help="video length in seconds (default 12; --quick 6)")
    ap.add_argument("--fps", type=float, default=8.0, help="sampled frames per second (default 8)")
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 (the batched extractor's)")
    ap.add_argument("--repeats", type=int, default=None, help="best of N (default 2; --quick 1)")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive loop")
    ap.add_argument("--quick", action="store_true", help="short video, one repeat, sizes 96 and 224")
    args = ap.parse_args()
    if args.quick:
        args.seconds = args.seconds or 6.0
        args.repeats = args.repeats or 1
        args.sizes = [s for s in args.sizes if s in (96, 224)] or args.sizes[:1]
    seconds, repeats = args.seconds or 12.0, args.repeats or 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = load_i3d(device=device)
    frames_n = int(round(seconds * args.fps))
    print(f"device={device} torch_threads={torch.get_num_threads()} video={seconds:g}s at {args.fps:g} fps "
          f"({frames_n} frames) window={args.window} stride={args.stride} precision={args.precision}")
    print(f"{'size':>5} {'windows':>8} {'batched w/s':>12} {'video-s/s':>10} {'naive w/s':>10} {'ratio':>6}")
    rng = np.random.default_rng(0)
    for size in args.sizes:
        frames = rng.integers(0, 256, (frames_n, size, size, 3), dtype=np.uint8)
        n = num_windows(frames_n, args.window, args.stride)
        warm = frames if device.type == "cuda" else frames[: args.window]  # on a GPU: cuDNN autotunes every shape
        extract_features(warm, model, args.window, args.stride, batch_size=args.batch_size, device=device,
                         precision=args.precision)  # warm-up
        tb = timed(lambda: extract_features(frames, model, args.window, args.stride, batch_size=args.batch_size,
                                            device=device, precision=args.precision), repeats)
        line = f"{size:>5} {n:>8} {n / tb:>12.2f} {seconds / tb:>10.2f}"
        if not args.no_naive:
            tn = timed(lambda: extract_features_naive(frames, model, args.window, args.stride, device=device), repeats)
            line += f" {n / tn:>10.2f} {tn / tb:>6.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_i3d", main)  # --no-readme: print only
