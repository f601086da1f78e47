"""Boundary max pooling (AFSD eq. 4), one torch thread: the autograd Function of models/afsd/boundary_pooling.py
("new": packed max + first-argmax table, backward scatters onto the argmax) against the sparse table with autograd
through torch.maximum and gather ("old", tests/reference_boundary_pooling.py). Forward (with grad), backward,
their sum, and the no-grad forward (inference) at AFSD's training shapes and larger ones; then one AFSD training
step (forward, loss, backward) on THUMOS14-shaped features with either pooling, swapped in by this script only.

Old and new run in turn on the same inputs (A B A B ..., each pair's order alternating) and the figures are
medians; "old/new" is the median of the per-pair ratios, so drift of a shared machine's speed cancels out.
Every shape is checked first: equal forward values and equal gradients (tie-free inputs, integer gradients).

    PYTHONPATH=. python benchmarks/bench_boundary_pooling.py [--repeats 7] [--steps 6] [--quick] [--no-train-step]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the reference implementation

# (label, B, C, T, K, longest proposal side in steps): AFSD's calls at batch 4, width 128, max_seq_len 256 (frame
# feature with level-0 proposals, a level-2 feature), a 256-d and a 512-d feature, a whole 2304-step video.
SHAPES = [
    ("frame T=256, K=256", 4, 128, 256, 256, 64),
    ("level 2 T=64, K=64", 4, 128, 64, 64, 16),
    ("C=256 T=256, K=256", 4, 256, 256, 256, 64),
    ("C=512 T=1024, K=1024", 2, 512, 1024, 1024, 120),
    ("C=512 T=2304, K=2304", 1, 512, 2304, 2304, 240),
]
QUICK = SHAPES[:3]


def proposals_regions(b: int, t: int, k: int, longest: float, g: torch.Generator):
    """Start regions (eq. 3) of random proposals at K locations over T steps: (B, K, 2), as AFSD pools them."""
    from tal_pipeline.models.afsd.boundary_pooling import boundary_regions

    pos = torch.linspace(0, t - 1, k).expand(b, k)
    start = pos - torch.rand(b, k, generator=g) * longest
    end = pos + torch.rand(b, k, generator=g) * longest
    return boundary_regions(start, end)[0]


def paired(fn_old, fn_new, repeats: int) -> tuple[list[float], list[float]]:
    """Per-repeat seconds of fn_old() and fn_new(), run in turn (order alternating) after one warm-up each."""
    fn_old(), fn_new()
    old, new = [], []
    for r in range(repeats):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            (fn_old if which == 0 else fn_new)()
            (old if which == 0 else new).append(time.perf_counter() - t0)
    return old, new


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1e3:9.2f}"


def ratio(old: list[float], new: list[float]) -> str:
    return f"{statistics.median(o / n for o, n in zip(old, new)):7.1f}x"


def bench_kernels(shapes, repeats: int) -> None:
    from tal_pipeline.models.afsd.boundary_pooling import boundary_max_pool as new_pool
    from tests.reference_boundary_pooling import boundary_max_pool as old_pool

    print(f"{'shape (B, C, T, K)':40s} {'pass':10s} {'old ms':>9s} {'new ms':>9s} {'old/new':>8s}")
    for label, b, c, t, k, longest in shapes:
        g = torch.Generator().manual_seed(0)
        feat = (torch.randperm(b * c * t, generator=g).float() / (b * c * t)).reshape(b, c, t)  # no ties
        regions = proposals_regions(b, t, k, longest, g)
        lengths = torch.full((b,), t)
        grad_out = torch.randint(-3, 4, (b, c, k), generator=g).float()  # integer: sums exact in any order
        f_old, f_new = feat.clone().requires_grad_(), feat.clone().requires_grad_()
        out_old, out_new = old_pool(f_old, regions, lengths), new_pool(f_new, regions, lengths)
        out_old.backward(grad_out)
        out_new.backward(grad_out)
        assert torch.equal(out_old, out_new) and torch.equal(f_old.grad, f_new.grad), label

        times = {}
        for name, pool, f in (("old", old_pool, f_old), ("new", new_pool, f_new)):
            fwd, bwd = [], []

            def step(pool=pool, f=f, fwd=fwd, bwd=bwd):
                f.grad = None
                t0 = time.perf_counter()
                out = pool(f, regions, lengths)
                t1 = time.perf_counter()
                out.backward(grad_out)
                fwd.append(t1 - t0)
                bwd.append(time.perf_counter() - t1)
            times[name] = (step, fwd, bwd)
        paired(times["old"][0], times["new"][0], repeats)
        (_, fo, bo), (_, fn, bn) = times["old"], times["new"]
        fo, bo, fn, bn = fo[1:], bo[1:], fn[1:], bn[1:]  # drop the warm-up
        both_o, both_n = [x + y for x, y in zip(fo, bo)], [x + y for x, y in zip(fn, bn)]
        name = f"{label} ({b}, {c}, {t}, {k})"
        print(f"{name:40s} {'forward':10s} {ms(fo)} {ms(fn)} {ratio(fo, fn)}")
        print(f"{'':40s} {'backward':10s} {ms(bo)} {ms(bn)} {ratio(bo, bn)}")
        print(f"{'':40s} {'fwd+bwd':10s} {ms(both_o)} {ms(both_n)} {ratio(both_o, both_n)}")

        def infer(pool):
            with torch.no_grad():
                pool(feat, regions, lengths)
        t_old, t_new = paired(lambda: infer(old_pool), lambda: infer(new_pool), repeats)
        print(f"{'':40s} {'no-grad':10s} {ms(t_old)} {ms(t_new)} {ratio(t_old, t_new)}")


def training_batches(steps: int, batch: int = 4, seq_len: int = 256):
    """`steps` batches of `batch` random 256-step crops of THUMOS14-shaped videos (256-d, written to a temp dir)."""
    from tal_pipeline.stages.data.timegrid import seconds_to_feature
    from tal_pipeline.stages.detectors.data import VideoItem, collate, random_crop
    from tal_pipeline.synthetic.thumos_like import generate_thumos_like

    with tempfile.TemporaryDirectory() as tmp:
        meta = json.loads(Path(generate_thumos_like(tmp, videos_train=batch * steps, videos_test=1)).read_text())
        grid = meta["time_grid"]
        train = {v: e for v, e in meta["database"].items() if e["subset"] == "validation"}
        labels = sorted({a["label"] for e in train.values() for a in e["annotations"]})
        items = []
        for video, entry in sorted(train.items()):
            sec = np.array([a["segment"] for a in entry["annotations"]], np.float64).reshape(-1, 2)
            steps_ = seconds_to_feature(sec, grid["fps"], grid["window"], grid["stride"]).astype(np.float32)
            labs = np.array([labels.index(a["label"]) for a in entry["annotations"]], np.int64)
            items.append(VideoItem(video, np.load(Path(tmp) / "features" / f"{video}.npy"), steps_, labs))
    rng = np.random.default_rng(0)
    batches = [collate([random_crop(it, seq_len, rng) for it in items[i:i + batch]], "cpu")
               for i in range(0, len(items), batch)]
    return batches, len(labels)


def bench_train_step(steps: int) -> None:
    from tal_pipeline.models.afsd import heads
    from tal_pipeline.models.afsd import model as afsd_model
    from tal_pipeline.models.afsd.model import AFSD
    from tests import reference_boundary_pooling as reference

    batches, num_classes = training_batches(steps)
    new_pool = heads.boundary_max_pool
    torch.manual_seed(0)
    model = AFSD(batches[0][0].shape[1], num_classes)  # the registry's defaults: width 128, 5 levels
    model.train()

    def use(pool):
        heads.boundary_max_pool = afsd_model.boundary_max_pool = pool  # this process only

    def step(x, mask, targets):
        torch.manual_seed(1)  # BCL draws the same contrastive clips for old and new
        model.zero_grad(set_to_none=True)
        losses = model.loss(model(x, mask), targets)
        losses["total"].backward()
        return float(losses["total"].detach())

    old, new = [], []
    try:
        for i, batch in enumerate(batches):
            for which in ((0, 1) if i % 2 == 0 else (1, 0)):
                use(reference.boundary_max_pool if which == 0 else new_pool)
                t0 = time.perf_counter()
                step(*batch)
                (old if which == 0 else new).append(time.perf_counter() - t0)
    finally:
        use(new_pool)
    old, new = old[1:], new[1:]  # the first batch warms up
    x = batches[0][0]
    print(f"\nAFSD training step (B={x.shape[0]}, C={x.shape[1]}, T={x.shape[2]}, width 128, 5 levels; forward, loss, "
          f"backward; {len(old)} batches of THUMOS14-shaped crops):")
    print(f"  old {ms(old)} ms   new {ms(new)} ms   old/new {ratio(old, new)}   "
          f"(an epoch of 60 videos = 15 steps: old {15 * statistics.median(old):.1f} s, "
          f"new {15 * statistics.median(new):.1f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7, help="paired repeats per kernel shape (default 7)")
    ap.add_argument("--steps", type=int, default=6, help="training batches timed with each pooling (default 6)")
    ap.add_argument("--quick", action="store_true", help="the three training-sized shapes only, 3 repeats, 3 steps")
    ap.add_argument("--no-train-step", action="store_true", help="kernels only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    repeats, steps = (3, 3) if args.quick else (args.repeats, args.steps)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, repeats={repeats}; medians, ms")
    bench_kernels(QUICK if args.quick else SHAPES, repeats)
    if not args.no_train_step:
        bench_train_step(steps + 1)


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_boundary_pooling", main)  # --no-readme: print only
