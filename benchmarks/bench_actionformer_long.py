"""ActionFormer's training step at the published THUMOS14 recipe (the reference's configs/thumos_i3d.yaml and its
defaults: T = 2,304, batch 2, 2,048-d I3D input, width 512, 4 heads, window 19, 6 levels, 20 classes) on the
CPU, with the local attention before (the full T x T masked SDPA at every level) and after (the banded form from
BANDED_MIN_LENGTH steps on: models/actionformer/attention.py), paired in one process.

    PYTHONPATH=. python benchmarks/bench_actionformer_long.py [--length 2304] [--steps 3] [--threads 1]

A step is forward, loss, backward and an AdamW step on random features with a padding mask (the second video
3/4 long) and three random actions per video. The two forms alternate step by step, each pair's order
alternating, so that a change in the machine's load hits both; figures are medians, and the ratio is the median
of the per-pair ratios. Peak RSS (the process's high-water mark) is read after each form's first step, the banded
form's first.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch


def batch(length: int, channels: int, classes: int, b: int = 2):
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([length] + [3 * length // 4] * (b - 1))
    mask = torch.arange(length)[None] < lengths[:, None]  # (B, T)
    x = torch.randn(b, channels, length, generator=g) * mask[:, None]  # (B, C, T)
    targets = []
    for n in lengths.tolist():
        s = torch.rand(3, generator=g) * 0.8 * n
        targets.append({"segments": torch.stack([s, s + 0.05 * n + torch.rand(3, generator=g) * 0.1 * n], 1),
                        "labels": torch.randint(0, classes, (3,), generator=g)})
    return x, mask, targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", type=int, default=2304)
    ap.add_argument("--steps", type=int, default=3, help="timed steps of each form")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from tal_pipeline.models.actionformer import attention
    from tal_pipeline.models.actionformer.model import ActionFormer

    banded_from = attention.BANDED_MIN_LENGTH
    torch.manual_seed(0)
    model = ActionFormer(in_channels=2048, num_classes=20, width=512, levels=6, heads=4, window=19).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4, weight_decay=0.05)
    x, mask, targets = batch(args.length, 2048, 20)
    levels = [args.length // 2 ** i for i in range(6)]

    def step(threshold: int) -> float:
        attention.BANDED_MIN_LENGTH = threshold
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model.loss(model(x, mask), targets)["total"].backward()
        opt.step()
        return time.perf_counter() - t0

    # Banded first: the peak RSS after its first step is its own; after the masked one's, the larger of the two.
    forms = {"banded (after)": banded_from, "masked (before)": 10**9}
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}; ActionFormer {params:.1f} M "
          f"parameters, batch (B=2, C=2048, T={args.length}), levels of {levels} steps; banded from "
          f"{banded_from} steps: levels {[t for t in levels if t >= banded_from]}")
    times: dict[str, list[float]] = {name: [] for name in forms}
    for name, threshold in forms.items():  # warm-up, and each form's peak memory
        first = step(threshold)
        print(f"{name}: first step {first:.2f} s, peak RSS so far "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    for i in range(args.steps):
        for name in (list(forms) if i % 2 == 0 else list(forms)[::-1]):
            times[name].append(step(forms[name]))
    before, after = (statistics.median(times[k]) for k in ("masked (before)", "banded (after)"))
    ratio = statistics.median(a / b for a, b in zip(times["masked (before)"], times["banded (after)"]))
    print(f"training step: masked {before:.2f} s, banded {after:.2f} s (medians of {args.steps}); "
          f"masked / banded {ratio:.2f}x")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: this script's section of benchmarks/README.md

    run_recorded("bench_actionformer_long", main)  # --no-readme: print only
