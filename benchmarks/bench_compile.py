"""Does torch.compile pay for detector training on a CPU? Eager against compiled training steps, side by side in
one process, on batches of THUMOS14-shaped crops (4 x 256 steps, 256-d, the benchmark's shape).

    PYTHONPATH=. python benchmarks/bench_compile.py [--detector actionformer] [--steps 8] [--rounds 3] [--threads 1]

The compiled model is torch.compile(model) over the same module (the forward: backbone, neck, heads; the loss and
its label assignment stay eager, their shapes change with every batch's ground truth). Its first call holds the
compile time (cold: a fresh inductor cache folder). Then eager and compiled steps (forward, loss, backward, AdamW
step) alternate batch by batch, each pair's order alternating, so that a change in the machine's load hits both;
figures are medians and "eager / compiled" is the median of the per-pair ratios. The last lines put the two
together for a training run of the detector's recipe on 60 videos at batch 4 (15 iterations an epoch): compile
seconds against seconds saved.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_boundary_pooling's THUMOS14-shaped batches


def main() -> None:
    # A fresh compile cache, so the first step's figure is a cold compile (inductor reuses compiled graphs across
    # processes from its cache folder, which would hide the cost a first run pays).
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_compile_inductor_")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="actionformer")
    ap.add_argument("--steps", type=int, default=8, help="batches (each timed eager and compiled once per round)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from bench_boundary_pooling import training_batches

    from tal_pipeline.models.detector_registry import build_detector, resolve_model_config
    from tal_pipeline.stages.detectors.training import resolve_train_config

    batches, num_classes = training_batches(args.steps)
    torch.manual_seed(0)
    model = build_detector(args.detector, batches[0][0].shape[1], num_classes, resolve_model_config(args.detector, {}))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    compiled = torch.compile(model)

    def step(forward, x, mask, targets) -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model.loss(forward(x, mask), targets)["total"].backward()
        opt.step()
        return time.perf_counter() - t0

    x = batches[0][0]
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, {args.detector}, batches of "
          f"(B={x.shape[0]}, C={x.shape[1]}, T={x.shape[2]}); {args.steps} batches x {args.rounds} rounds")
    first_eager = step(model, *batches[0])
    first_compiled = step(compiled, *batches[0])  # compiles
    print(f"first step: eager {first_eager:.2f} s, compiled {first_compiled:.1f} s (the compile)")
    eager, comp = [], []
    for r in range(args.rounds):
        for i, batch in enumerate(batches):
            for which in ((0, 1) if (r + i) % 2 == 0 else (1, 0)):
                (eager if which == 0 else comp).append(step(model if which == 0 else compiled, *batch))
    # Later compiles (a new shape, a recompile) land in a timed step: the maximum shows them.
    e_ms, c_ms = statistics.median(eager) * 1e3, statistics.median(comp) * 1e3
    ratio = statistics.median(a / b for a, b in zip(eager, comp))
    print(f"training step: eager {e_ms:.1f} ms, compiled {c_ms:.1f} ms (slowest {max(comp) * 1e3:.0f} ms), "
          f"eager / compiled {ratio:.2f}x")
    iters = 15 * resolve_train_config(args.detector)["epochs"]
    print(f"a recipe run ({iters} iterations: 60 videos, batch 4): eager {iters * e_ms / 1e3:.0f} s, compiled "
          f"{iters * c_ms / 1e3:.0f} s + {first_compiled:.0f} s compile = "
          f"{iters * c_ms / 1e3 + first_compiled:.0f} s; break-even after "
          f"{first_compiled / max((e_ms - c_ms) / 1e3, 1e-9):.0f} iterations" if e_ms > c_ms else
          f"a recipe run ({iters} iterations): compiled is not faster; nothing to gain")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_compile", main)  # --no-readme: print only
