"""GPU smoke test: the CUDA checks, I3D throughput and one epoch of every detector at its published recipe and at
the pipeline's small one, with peak memory, printed as one table (under 10 minutes on an H100-class card).

    python benchmarks/gpu_smoke.py                       # on the GPU (device cuda); writes its README section
    python benchmarks/gpu_smoke.py --device cpu --quick  # the dry run of tests/test_gpu_smoke.py (< 30 s)

Needs torch, numpy, pandas, scipy and tqdm (all dependencies of this project) and the repository itself; the project
need not be installed (its folders are imported as `tal_pipeline` from here). Rows:
- check: the checks of benchmarks/gpu_checks.py (bf16 steps, bf16 encoder, deterministic repeats, no host sync in
  AFSD's boundary pooling, the scheduler's GPU count); FAIL rows make the script exit 1 after the table.
- i3d: stages.data.features.extract_features on a synthetic uint8 video (frames/s, fp16 autocast as the stage
  runs it), and the model alone on random windows under fp16 and bf16 autocast (windows/s; frames/s = windows/s x
  stride 4, each window adding 4 new frames) with the share of the card's dense fp16/bf16 tensor peak (FLOPs
  counted by torch.utils.flop_counter; peaks by card name below, "?" for a card not listed).
- epoch: one training epoch of train_detector (THUMOS14-sized: 200 videos of 1,000-3,000 steps of 2,048-d
  features) at the published recipe of the reference THUMOS14 configs (ActionFormer / TriDet: T up to 2,304,
  width 512, batch 2; TadTR: 128-step windows, width 256, 2 encoder / 4 decoder layers, batch 16; AFSD on
  features: 256 steps, width 512, batch 4), and at the pipeline's small defaults (60 videos, 1,024-d): seconds of
  the epoch (set-up included, the health check after it not), steps/s and the peak GPU memory of the epoch.
--quick shrinks every size (a few tiny videos, width 32) so the dry run only proves the paths run.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Dense tensor-core peaks (TFLOP/s, fp16 = bf16, no sparsity) by a substring of torch.cuda.get_device_name().
PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("GH200", 989.0),
               ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0),
               ("RTX 4090", 165.0), ("V100", 125.0), ("T4", 65.0))
PUBLISHED = {  # model options, training settings: the reference THUMOS14 configs (see the module docstring)
    "actionformer": ({"width": 512, "window": 19, "heads": 4}, {"max_seq_len": 2304, "batch_size": 2}),
    "tridet": ({"width": 512}, {"max_seq_len": 2304, "batch_size": 2}),
    "tadtr": ({"width": 256, "enc_layers": 2, "dec_layers": 4, "queries": 40}, {"max_seq_len": 128, "batch_size": 16}),
    "afsd": ({"width": 512}, {"max_seq_len": 256, "batch_size": 4}),
}


def _importable() -> None:
    """`tal_pipeline` (its folder links to the repository's folders) and `tests` from the checkout, installed or not."""
    sys.path.insert(0, str(REPO))


def _peak(name: str) -> float | None:
    return next((tf * 1e12 for key, tf in PEAK_TFLOPS if key in name), None)


def run_checks(dev, quick: bool, rows: list) -> None:
    from gpu_checks import CHECKS

    for check in CHECKS:
        t0 = time.perf_counter()
        try:
            rows.append(("check", check.__name__, "ok", f"{check(dev, quick)} ({time.perf_counter() - t0:.1f} s)"))
        except Exception as exc:  # noqa: BLE001 - every check reports, the script fails after the table
            rows.append(("check", check.__name__, "FAIL", f"{type(exc).__name__}: {str(exc)[:150]}"))


def i3d_throughput(dev, quick: bool, rows: list) -> None:
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tal_pipeline.models.i3d import I3D
    from tal_pipeline.stages.data.features import extract_features

    size, frames, batch, reps = (32, 24, 1, 1) if quick else (224, 1024, 32, 5)
    model = I3D().to(dev).eval()
    video = np.random.default_rng(0).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    extract_features(video[:32], model, device=dev)  # warm-up (cuDNN's choice of kernels)
    t0 = time.perf_counter()
    extract_features(video, model, device=dev)
    rows.append(("i3d", f"extract_features ({size} px)", f"{frames / (time.perf_counter() - t0):.0f} frames/s",
                 f"{frames} frames, the stage's defaults"))
    x = torch.randn(batch, 3, 16, size, size, device=dev)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x[:1])
    flops = counter.get_total_flops()  # per window
    peak = _peak(torch.cuda.get_device_name(dev)) if dev.type == "cuda" else None
    # On the CPU (the dry run) fp32 only: CPU half-precision 3-D convolutions are emulated, minutes at any size.
    for dtype in (torch.float16, torch.bfloat16) if dev.type == "cuda" else (torch.float32,):
        with torch.no_grad(), torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
            model(x)
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(reps):
                model(x)
            _sync(dev)
        rate = batch * reps / (time.perf_counter() - t0)
        share = f"{100 * flops * rate / peak:.1f} % of peak" if peak else "peak: ?"
        rows.append(("i3d", f"model {str(dtype)[6:]} batch {batch}", f"{4 * rate:.0f} frames/s",
                     f"{rate:.1f} windows/s, {flops / 1e9:.0f} GFLOP/window, {share}"))


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _dataset(quick: bool, videos: int, channels: int, lengths: tuple[int, int]):
    from tests.synthetic_features import synthetic_feature_dataset

    if quick:
        videos, channels, lengths = 2, 32, (48, 64)
    return synthetic_feature_dataset(num_videos=videos, channels=channels, num_classes=20 if not quick else 3,
                                     min_len=lengths[0], max_len=lengths[1])


def detector_epochs(dev, quick: bool, rows: list) -> None:
    import torch

    from tal_pipeline.stages.detectors.training import train_detector

    for recipe, data in (("published", (200, 2048, (1000, 3000))), ("small", (60, 1024, (200, 2000)))):
        feats, ann, labels, grid, _ = _dataset(quick, *data)
        for name in ("actionformer", "tridet", "afsd", "tadtr"):
            model, train = PUBLISHED[name] if recipe == "published" else ({}, {})
            if quick:
                model, train = {**model, "width": 32}, {**train, "max_seq_len": min(train.get("max_seq_len", 64), 64)}
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            marks: list[tuple[float, float]] = []

            def on_epoch(done, total):
                _sync(dev)
                marks.append((time.perf_counter(), torch.cuda.max_memory_allocated(dev) / 2**30
                               if dev.type == "cuda" else float("nan")))

            t0 = time.perf_counter()
            try:
                _, cfg, log = train_detector(name, feats, ann, labels, grid, {**train, "epochs": 1, "model": model},
                                             device=str(dev), progress=False, on_epoch=on_epoch)
            except Exception as exc:  # noqa: BLE001 - an out-of-memory recipe is a row, not the end of the table
                rows.append(("epoch", f"{name} {recipe}", "FAIL", f"{type(exc).__name__}: {str(exc)[:150]}"))
                continue
            seconds, peak = marks[0][0] - t0, f"{marks[0][1]:.2f} GiB" if dev.type == "cuda" else "n/a on CPU"
            shape = f"T <= {cfg['max_seq_len']}, width {cfg['model']['width']}, batch {cfg['train']['batch_size']}"
            rows.append(("epoch", f"{name} {recipe} ({shape})", f"{seconds:.1f} s",
                         f"{len(log)} steps, {len(log) / seconds:.2f} steps/s, peak memory {peak}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of every path (the test suite's)")
    args = ap.parse_args()
    _importable()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch

    from tal_pipeline.stages.runtime import resolve_device

    dev = resolve_device(args.device)
    if dev.type == "cpu" and args.quick:
        torch.set_num_threads(1)  # the dry run beside other tests: one core, no thread thrashing
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as a feature run on a GPU would: the fastest kernels per shape
    start = time.perf_counter()
    rows: list[tuple[str, str, str, str]] = []
    run_checks(dev, args.quick, rows)
    i3d_throughput(dev, args.quick, rows)
    detector_epochs(dev, args.quick, rows)
    card = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"device: {card}, torch {torch.__version__}, {'quick' if args.quick else 'full'} run, "
          f"{time.perf_counter() - start:.0f} s\n")
    print("| part | what | result | details |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")  # a pipe would split a cell
    if any(r[2] == "FAIL" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    if "--quick" in sys.argv or "--device" in sys.argv and "cpu" in sys.argv:
        main()  # the dry run writes no README section
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _readme import run_recorded  # benchmarks/_readme.py: this script's section of benchmarks/README.md

        run_recorded("gpu_smoke", main)
