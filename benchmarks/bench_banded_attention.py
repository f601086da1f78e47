"""Local attention: today's full T x T masked SDPA against the banded form (models/actionformer/banded.py), forward
and backward, for a range of lengths T and the banded form's block sizes, on the CPU, at two shapes: ActionFormer's
published THUMOS14 recipe (batch 2, 4 heads of 128 channels: width 512, window 19) and this pipeline's
(batch 4, 4 heads of 16: width 64, window 9, crops of at most 256 steps).

    PYTHONPATH=. python benchmarks/bench_banded_attention.py [--lengths 72 144 192 256 288 576 1152 2304]
        [--blocks 16 32 64] [--repeats 5] [--threads 1]

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
    ap.add_argument("--lengths", type=int, nargs="+", default=[72, 144, 192, 256, 288, 576, 1152, 2304])
    ap.add_argument("--blocks", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}; forward + backward, ms (median of "
          f"{args.repeats}); masked/banded at the default block")
    # (name, batch, heads, head dim, window, longest T)
    for name, b, h, e, window, longest in (("published THUMOS14 recipe", 2, 4, 128, 19, max(args.lengths)),
                                           ("this pipeline's recipe", 4, 4, 16, 9, 512)):
        print(f"{name}: q, k, v of (B={b}, H={h}, T, E={e}), window {window}")
        table(b, h, e, window, [t for t in args.lengths if t <= longest], args.blocks, args.repeats)


def table(b: int, h: int, e: int, window: int, lengths: list[int], blocks: list[int], repeats: int) -> None:
    from tal_pipeline.models.actionformer.attention import local_attention_mask
    from tal_pipeline.models.actionformer.banded import DEFAULT_BLOCK, banded_attention

    print(f"{'T':>6} {'masked':>9} " + " ".join(f"{f'block {n}':>9}" for n in blocks) + "  masked/banded")
    for t in lengths:
        torch.manual_seed(0)
        q, k, v = (torch.randn(b, h, t, e, requires_grad=True) for _ in range(3))
        mask = torch.arange(t)[None] < torch.tensor([t] + [max(1, 3 * t // 4)] * (b - 1))[:, None]  # (B, T)

        def masked():
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=local_attention_mask(mask, window))
            a.sum().backward()

        def banded(block):
            banded_attention(q, k, v, mask, window, block).sum().backward()

        full = timed(masked, repeats)
        per_block = {n: timed(lambda n=n: banded(n), repeats) for n in blocks}
        ref = per_block.get(DEFAULT_BLOCK, min(per_block.values()))
        print(f"{t:>6} {full * 1e3:>9.2f} " + " ".join(f"{per_block[n] * 1e3:>9.2f}" for n in blocks)
              + f"  {full / ref:>6.2f}x")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: this script's section of benchmarks/README.md

    run_recorded("bench_banded_attention", main)  # --no-readme: print only
