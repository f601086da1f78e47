"""Detector speed: inference feature-steps/s at C = 1024 and 1024 + BAPG width, training time per epoch on the
default-size synthetic set, and the vectorised kernels against naive loops (boundary max pooling, Soft-NMS).

    PYTHONPATH=. python benchmarks/bench_detectors.py [--quick] [--device cuda] [--threads 2]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the synthetic data and references


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def naive_pool(feat, regions, lengths):
    out = torch.empty(feat.shape[0], feat.shape[1], regions.shape[1])
    for b in range(feat.shape[0]):
        last = int(lengths[b]) - 1
        for k in range(regions.shape[1]):
            lo = min(max(math.floor(regions[b, k, 0].item()), 0), last)
            hi = max(min(max(math.ceil(regions[b, k, 1].item()), 0), last), lo)
            out[b, :, k] = feat[b, :, lo:hi + 1].max(dim=1).values
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, one training epoch")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    ap.add_argument("--bapg-width", type=int, default=3 * (1024 + 1),
                    help="extra channels of BAPG (default: 3 values of m x (pooled 1024-d Fv + relative position))")
    ap.add_argument("--seq-len", type=int, default=256)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from tal_pipeline.models.afsd.boundary_pooling import boundary_max_pool
    from tal_pipeline.models.detector_registry import build_detector
    from tal_pipeline.models.nms import soft_nms
    from tal_pipeline.stages.detectors.training import train_detector
    from tal_pipeline.stages.runtime import resolve_device
    from tests.reference_nms import naive_soft_nms
    from tests.synthetic_features import synthetic_feature_dataset

    dev = resolve_device(args.device)
    reps = 2 if args.quick else 5
    print(f"device={dev} threads={torch.get_num_threads()} seq_len={args.seq_len}")

    # Kernels against naive loops (same inputs, same results checked).
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 128, 256, generator=g)
    a = torch.rand(2, 256, generator=g) * 256
    regions = torch.stack([a, a + torch.rand(2, 256, generator=g) * 40], -1)
    lengths = torch.tensor([256, 200])
    assert torch.equal(boundary_max_pool(feat, regions, lengths), naive_pool(feat, regions, lengths))
    t_vec = timed(lambda: boundary_max_pool(feat, regions, lengths), reps * 4)
    t_naive = timed(lambda: naive_pool(feat, regions, lengths), 1)
    print(f"boundary max pooling (B=2, D=128, T=256, 256 proposals): vectorised {t_vec * 1e3:.2f} ms, "
          f"naive loop {t_naive * 1e3:.1f} ms, ratio {t_naive / t_vec:.0f}x")
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 500, 1000)
    segs = np.stack([s, s + rng.uniform(1, 40, 1000)], 1)
    sc = rng.uniform(0, 1, 1000)
    naive = [i for i, _ in naive_soft_nms(segs.tolist(), sc.tolist())]
    assert soft_nms(torch.tensor(segs), torch.tensor(sc))[0].tolist() == naive
    t_vec = timed(lambda: soft_nms(torch.tensor(segs), torch.tensor(sc)), reps)
    t_naive = timed(lambda: naive_soft_nms(segs.tolist(), sc.tolist()), 1)
    print(f"Soft-NMS (1000 candidates): vectorised {t_vec * 1e3:.1f} ms, naive {t_naive * 1e3:.0f} ms, "
          f"ratio {t_naive / t_vec:.1f}x")

    # Inference throughput: one batch of 4 windows of seq_len steps, forward + predict (NMS included).
    for name in ("afsd", "actionformer"):
        for c in (1024, 1024 + args.bapg_width):
            model = build_detector(name, c, 20).to(dev).eval()
            x = torch.randn(4, c, args.seq_len, device=dev)
            mask = torch.ones(4, args.seq_len, dtype=torch.bool, device=dev)

            def run():
                with torch.no_grad():
                    model.predict(model(x, mask))
            t = timed(run, reps)
            n_par = sum(p.numel() for p in model.parameters())
            print(f"inference {name:12s} C={c:5d}: {4 * args.seq_len / t:9.0f} feature steps/s "
                  f"({t * 1e3:.0f} ms per 4x{args.seq_len}, {n_par / 1e6:.2f} M params)")

    # Training time per epoch on the default-size synthetic set (16 videos x 120-250 steps).
    feats, ann, labels, grid, _ = synthetic_feature_dataset(16, channels=1024, num_classes=4, seed=0)
    epochs = 1 if args.quick else 2
    for name in ("afsd", "actionformer"):
        cfg = {"epochs": epochs, "warmup_epochs": 0}
        t = time.perf_counter()
        _, _, log = train_detector(name, feats, ann, labels, grid, cfg, seed=0, device=str(dev), progress=False)
        dt = (time.perf_counter() - t) / epochs
        print(f"training {name:12s} C=1024: {dt:.2f} s/epoch ({len(log) // epochs} iterations/epoch, "
              f"batch 4, max_seq_len 256)")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_detectors", main)  # --no-readme: print only
