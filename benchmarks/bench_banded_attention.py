"""Local attention: today's full T x T masked SDPA against the banded form (models/actionformer/banded.py), forward
and backward, on ActionFormer's published THUMOS14 shapes (batch 2, 4 heads of 128 channels: width 512,
window 19), for a range of lengths T, and for the banded form's block sizes; on the CPU.

    PYTHONPATH=. python benchmarks/bench_banded_attention.py [--lengths 36 72 144 288 576 1152 2304]
        [--blocks 16 32 64 128] [--repeats 5] [--threads 1]

Each figure is the median of --repeats timed calls (after one warm-up) of forward + backward of the attention
alone (q, k, v given, a padding mask with the second video 3/4 long). The last column is masked / banded at the
default block; the crossover (the shortest T where banded wins) sets BANDED_MIN_LENGTH in
models/actionformer/attention.py.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[36, 72, 144, 288, 576, 1152, 2304])
    ap.add_argument("--blocks", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--window", type=int, default=19)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from tal_pipeline.models.actionformer.attention import local_attention_mask
    from tal_pipeline.models.actionformer.banded import DEFAULT_BLOCK, banded_attention

    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}; q, k, v of (B={args.batch}, "
          f"H={args.heads}, T, E={args.head_dim}), window {args.window}; forward + backward, ms (median of "
          f"{args.repeats})")
    print(f"{'T':>6} {'masked':>9} " + " ".join(f"{f'block {b}':>9}" for b in args.blocks) + "  masked/banded")
    for t in args.lengths:
        torch.manual_seed(0)
        q, k, v = (torch.randn(args.batch, args.heads, t, args.head_dim, requires_grad=True) for _ in range(3))
        lengths = torch.tensor([t] + [max(1, 3 * t // 4)] * (args.batch - 1))
        mask = torch.arange(t)[None] < lengths[:, None]  # (B, T)

        def masked():
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=local_attention_mask(mask, args.window))
            a.sum().backward()

        def banded(block):
            banded_attention(q, k, v, mask, args.window, block).sum().backward()

        full = timed(masked, args.repeats)
        per_block = {b: timed(lambda b=b: banded(b), args.repeats) for b in args.blocks}
        ref = per_block.get(DEFAULT_BLOCK, min(per_block.values()))
        print(f"{t:>6} {full * 1e3:>9.2f} " + " ".join(f"{per_block[b] * 1e3:>9.2f}" for b in args.blocks)
              + f"  {full / ref:>6.2f}x")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: this script's section of benchmarks/README.md

    run_recorded("bench_banded_attention", main)  # --no-readme: print only
