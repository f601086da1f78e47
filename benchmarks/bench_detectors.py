"""Detector speed: inference feature-steps/s of each detector on C = 1024 features and of its +BAPG variant (the
detector wrapped by BAPGFusion, as TrainDetector builds it, on 1024 + BAPG-width channels), training time per
epoch of both on the default-size synthetic set, and the vectorised kernels against naive loops (boundary max
pooling, Soft-NMS). The default BAPG width is that of the default run, computed by the ProposalFeatures stage code
with the default TSCProposals scales and projection (3 scales x (128 + 4) = 396).

    PYTHONPATH=. python benchmarks/bench_detectors.py [--quick] [--device cuda] [--threads 1 2] [--bapg-width K]
        [--detectors afsd actionformer tridet tadtr]

Every registered detector by default. Each training row runs in a fresh child process, so its peak RSS is that
run's own (the data, the model, the optimiser and the autograd graph), not the largest of the rows before it.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the synthetic data and references
from tal_pipeline.models.detector_registry import DETECTORS  # noqa: E402 - after the path (a clone's tests/)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def default_bapg_width(video_channels: int = 1024) -> int:
    """Channels ProposalFeatures adds in the default run: its stage function on dummy features, with the scales of
    the default TSCProposals (fixed counts ms, rates, the KTS scale when penalty > 0) and its projection_dim."""
    import pipeline  # noqa: F401 - the shipped luigi.cfg: the defaults of a run
    from pipeline.bapg_tasks import ProposalFeatures, TSCProposals
    from tal_pipeline.stages.bapg.proposal_features import boundary_aware_features

    tsc = TSCProposals()
    scales = len(tsc.ms) + len(tsc.rates) + int(tsc.penalty > 0)
    change_points = {m: np.array([8, 24]) for m in range(scales)}  # the width does not depend on where they are
    features = np.zeros((32, video_channels), np.float32)
    return int(boundary_aware_features(features, change_points, ProposalFeatures().projection_dim).shape[1])


def train_epochs(name: str, bapg_width: int, epochs: int, device: str, threads: int) -> tuple[float, int, float, str]:
    """Seconds per epoch, iterations per epoch, peak RSS (MiB) of training `name` in this (child) process, and
    its batch settings (the detector's recipe).
    +BAPG: random BAPG channels after the features, fused as in TrainDetector (train_detector, bapg_channels)."""
    if threads:
        torch.set_num_threads(threads)
    from tal_pipeline.stages.detectors.training import resolve_train_config, train_detector
    from tests.synthetic_features import synthetic_feature_dataset

    feats, ann, labels, grid, _ = synthetic_feature_dataset(16, channels=1024, num_classes=4, seed=0)
    if bapg_width:
        rng = np.random.default_rng(0)
        feats = {v: np.concatenate([x, rng.normal(size=(len(x), bapg_width)).astype(np.float32)], 1)
                 for v, x in feats.items()}
    t = time.perf_counter()
    _, _, log = train_detector(name, feats, ann, labels, grid, {"epochs": epochs, "warmup_epochs": 0}, seed=0,
                               device=device, progress=False, bapg_channels=bapg_width)
    dt = (time.perf_counter() - t) / epochs
    cfg = resolve_train_config(name)
    return (dt, len(log) // epochs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
            f"batch {cfg['batch_size']}, max_seq_len {cfg['max_seq_len']}")


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
    ap.add_argument("--threads", type=int, nargs="+", default=[0],
                    help="torch CPU threads (0: leave torch's default); the kernels and inference use the first, "
                         "the training rows run once per value")
    ap.add_argument("--bapg-width", type=int, default=0,
                    help="BAPG channels of the +BAPG detector (0: those of the default run, scales x (projection + 4))")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    args = ap.parse_args()
    if args.threads[0]:
        torch.set_num_threads(args.threads[0])
    from tal_pipeline.models.afsd.boundary_pooling import boundary_max_pool
    from tal_pipeline.models.detector_registry import build_detector, resolve_fusion_config, resolve_model_config
    from tal_pipeline.models.nms import soft_nms
    from tal_pipeline.stages.runtime import resolve_device
    from tests.reference_nms import naive_soft_nms

    dev = resolve_device(args.device)
    reps = 2 if args.quick else 5
    bapg_width = args.bapg_width or default_bapg_width()
    print(f"device={dev} threads={torch.get_num_threads()} seq_len={args.seq_len} bapg_width={bapg_width}")

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
    for name in args.detectors:
        for bapg in (0, bapg_width):
            c = 1024 + bapg
            # Default settings, resolved once, as train_detector resolves them; +BAPG: BAPGFusion(detector).
            model = build_detector(name, c, 20, resolve_model_config(name), bapg_channels=bapg,
                                   fusion=resolve_fusion_config() if bapg else None).to(dev).eval()
            x = torch.randn(4, c, args.seq_len, device=dev)
            mask = torch.ones(4, args.seq_len, dtype=torch.bool, device=dev)

            def run():
                with torch.no_grad():
                    model.predict(model(x, mask))
            t = timed(run, reps)
            n_par = sum(p.numel() for p in model.parameters())
            label = f"{name} + BAPG" if bapg else name
            print(f"inference {label:19s} C={c:5d}: {4 * args.seq_len / t:9.0f} feature steps/s "
                  f"({t * 1e3:.0f} ms per 4x{args.seq_len}, {n_par / 1e6:.2f} M params)")

    # Training time per epoch on the default-size synthetic set (16 videos x 120-250 steps), one child per row.
    epochs = 1 if args.quick else 2
    spawn = multiprocessing.get_context("spawn")  # a fresh process: its peak RSS is this row's alone
    for threads in args.threads:
        for name in args.detectors:
            for bapg in (0, bapg_width):
                with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                    dt, iters, rss_mib, batches = pool.submit(train_epochs, name, bapg, epochs, str(dev),
                                                              threads).result()
                label = f"{name} + BAPG" if bapg else name
                print(f"training {label:19s} C={1024 + bapg:5d} threads={threads or 'default'}: {dt:.2f} s/epoch, "
                      f"{iters / dt:.2f} iterations/s ({iters} iterations/epoch, {batches}), peak RSS "
                      f"{rss_mib:.0f} MiB")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_detectors", main)  # --no-readme: print only
