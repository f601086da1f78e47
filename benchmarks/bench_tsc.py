"""TSC speed against ruptures' KernelCPD (its C dynamic programme, kernel "cosine"), and the longest THUMOS14 video.

    PYTHONPATH=. python benchmarks/bench_tsc.py [--quick] [--rate 30] [--repeats 3]

What is timed (best of --repeats, after one warm-up call that loads the Numba cache):
  ours:      change_points(S, ms=(10, 15, 20)) on the precomputed (T, T) float64 cosine similarity S (in memory): one
             DP pass up to 21 segments, reading S in row blocks, with backtracking for the three m; T = 2000, 4000.
             "block sums only": the same pass for m = 0 (one segment: the O(T^2) block sums and segment costs
             v(a, b), no min-plus DP); the rest of the time is the DP proper.
  ruptures:  KernelCPD(kernel="cosine", min_size=1).fit(X).predict(n_bkps=20) on the (T, 64) embeddings X: one call
             whose C DP also yields every m <= 20 (its best case); at T = 2000 also "per m": a fresh fit + predict
             for each of m = 10, 15, 20, as a user asking for three m would run it. ruptures computes its kernel
             from X on the fly; ours reads S, which the pipeline already has. The change points must be the same.
  ns per DP cell: wall time / the number of (segment end, segment start, k) triples the DP evaluates
             (k = 2 .. m_max + 1 segments); "DP proper" subtracts the block-sums-only time.
Longest THUMOS14 video (a child process, for its peak RSS): T = 12548 feature steps (1673 s at 7.5 steps/s) and
m = round(rate * 1673 / 60) change points (--rate, per minute of video; 30 -> 836), the largest count the
per-video rates give. The child builds S as a float16 .npy memmap in row blocks, then runs segment(S, m) (one DP
pass for every count up to m) and the backtracking for m; its time, ns per DP cell and ru_maxrss are printed
(target <= 3 GB peak RSS). --quick: T = 2000 only, no per-m ruptures run, and T = 6000 (800 s) for the child.
The machine's load average is printed first: other processes on the machine slow every figure.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tal_pipeline.stages.bapg.tsc import change_points  # noqa: E402
from tests.reference_similarity import cosine_similarity_matrix as cosine_similarity  # noqa: E402

MS = (10, 15, 20)
STEPS_PER_SECOND = 7.5  # THUMOS14 feature steps per second of video (12548 steps / 1673 s)
LONGEST_THUMOS14 = (12548, 1673.0)  # (feature steps, seconds) of the longest THUMOS14 video


def embeddings(T: int, dim: int = 64, regimes: int = 25, seed: int = 0) -> np.ndarray:
    """(T, dim) steps drawn around `regimes` random centres in contiguous runs: a video-like signal."""
    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(0, regimes, size=T))
    return rng.normal(size=(regimes, dim))[labels] + 0.7 * rng.normal(size=(T, dim))


def dp_cells(T: int, kmax: int, min_size: int = 1) -> int:
    """Number of (b, a, k) triples the DP evaluates for k = 2..kmax segments."""
    total = 0
    for k in range(2, kmax + 1):
        # segment ends b = k*min_size .. T, each with b - min_size - (k - 1) * min_size + 1 starts
        n = T - k * min_size + 1
        if n > 0:
            total += n * (n + 1) // 2
    return total


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def speed(T: int, repeats: int, per_m: bool) -> None:
    import ruptures as rpt

    X = embeddings(T)  # (T, 64)
    S = cosine_similarity(X)  # (T, T) float64
    change_points(S[:64, :64], ms=MS)  # warm-up: Numba cache
    ours_t = best_time(lambda: change_points(S, ms=MS), repeats)
    sums_t = best_time(lambda: change_points(S, ms=[0]), repeats)
    ours = change_points(S, ms=MS)
    algo = None

    def rpt_once():
        nonlocal algo
        algo = rpt.KernelCPD(kernel="cosine", min_size=1).fit(X)
        algo.predict(n_bkps=max(MS))

    rpt_t = best_time(rpt_once, 1 if T > 2000 else repeats)
    same = all(ours[m].tolist() == algo.predict(n_bkps=m)[:-1] for m in MS)
    cells = dp_cells(T, max(MS) + 1)
    print(f"T={T}: ours {ours_t * 1e3:8.1f} ms (m=10,15,20, one pass; {ours_t / cells * 1e9:.3f} ns per DP cell, "
          f"{cells / 1e6:.0f} M cells); block sums only {sums_t * 1e3:.1f} ms -> DP proper "
          f"{(ours_t - sums_t) / cells * 1e9:.3f} ns per cell")
    print(f"T={T}: ruptures KernelCPD predict(n_bkps=20) once {rpt_t * 1e3:8.1f} ms -> ratio {rpt_t / ours_t:6.1f}x"
          f"   (same change points: {same})")
    if per_m:
        per = best_time(lambda: [rpt.KernelCPD(kernel="cosine", min_size=1).fit(X).predict(n_bkps=m) for m in MS], 1)
        print(f"T={T}: ruptures KernelCPD fit+predict per m (10, 15, 20) {per * 1e3:8.1f} ms -> ratio "
              f"{per / ours_t:6.1f}x")


CHILD = r"""
import resource, sys, time, numpy as np
sys.path.insert(0, {repo!r})
from tal_pipeline.stages.bapg.tsc import segment
T, m, path = {T}, {m}, {path!r}
rng = np.random.default_rng(0)
labels = np.sort(rng.integers(0, 40, size=T))
E = rng.normal(size=(40, 64))[labels] + 0.7 * rng.normal(size=(T, 64))   # (T, 64)
E /= np.linalg.norm(E, axis=1, keepdims=True)
S = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(T, T))
for r0 in range(0, T, 512):                                              # build S in row blocks
    S[r0:r0 + 512] = (E[r0:r0 + 512] @ E.T).astype(np.float16)
S.flush(); del S, E
S = np.load(path, mmap_mode="r")
segment(np.asarray(S[:64, :64]), 8)                                      # warm-up: Numba cache
t0 = time.perf_counter()
seg = segment(S, m, name="longest")
cps = seg.change_points(seg.max_change_points)
dt = time.perf_counter() - t0
print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, len(cps))
"""


def long_video(T: int, seconds: float, rate: float) -> None:
    """One DP pass for m = round(rate * seconds / 60) change points on a (T, T) float16 memmap, in a child."""
    m = int(round(rate * seconds / 60.0))
    repo = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        code = CHILD.format(repo=repo, T=T, m=m, path=str(Path(tmp) / "s.npy"))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    dt, rss_mb, got = float(out[0]), float(out[1]), int(out[2])
    cells = dp_cells(T, m + 1)
    print(f"T={T} ({seconds:.0f} s) float16 memmap, m={m} ({rate:g} per minute; {got} change points): "
          f"{dt:.1f} s, {dt / cells * 1e9:.3f} ns per DP cell ({cells / 1e9:.1f} G cells), child peak RSS "
          f"{rss_mb:.0f} MiB ({rss_mb / 1024:.2f} GiB; target <= 3 GB; includes the {T * T * 2 / 2**20:.0f} MiB "
          f"mapped S pages)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="T = 2000 only, no per-m ruptures run, T = 6000 (800 s) for the long video")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rate", type=float, default=30.0, help="change points per minute for the long video")
    args = ap.parse_args()
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} "
          "CPUs")
    speed(2000, args.repeats, per_m=not args.quick)
    if not args.quick:
        speed(4000, args.repeats, per_m=False)
    if args.quick:
        long_video(6000, 6000 / STEPS_PER_SECOND, args.rate)
    else:
        long_video(*LONGEST_THUMOS14, args.rate)
    print(f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_tsc", main)  # --no-readme: print only
