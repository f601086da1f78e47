"""TSC speed against ruptures' KernelCPD (its C dynamic programme, kernel "cosine") and peak memory at T = 11000.

    PYTHONPATH=. python benchmarks/bench_tsc.py [--quick]

What is timed (best of --repeats, after one warm-up call that loads the Numba cache):
  ours:      change_points(S, ms=(10, 15, 20)) on the precomputed (T, T) float64 cosine similarity S: one DP pass
             up to 21 segments, reading S in row blocks, with backtracking for the three m.
  ruptures:  KernelCPD(kernel="cosine", min_size=1).fit(X).predict(n_bkps=20) on the (T, 64) embeddings X: one call
             whose C DP also yields every m <= 20 (its best case); at T = 2000 also "per m": a fresh fit + predict
             for each of m = 10, 15, 20, as a user asking for three m would run it. ruptures computes its kernel
             from X on the fly; ours reads S, which the pipeline already has.
  ns per DP cell: our wall time / the number of (segment end, segment start, k) triples the DP evaluates.
Peak RSS: a child process builds a T = 11000 float16 S in row blocks into a .npy memmap, then computes the change
points from the memmap; its ru_maxrss is printed (target <= 3 GB).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.tsc import change_points, cosine_similarity  # noqa: E402

MS = (10, 15, 20)


def embeddings(T: int, dim: int = 64, regimes: int = 25, seed: int = 0) -> np.ndarray:
    """(T, dim) steps drawn around `regimes` random centres in contiguous runs: a video-like signal."""
    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(0, regimes, size=T))
    return rng.normal(size=(regimes, dim))[labels] + 0.7 * rng.normal(size=(T, dim))


def dp_cells(T: int, kmax: int, min_size: int = 1) -> int:
    """Number of (b, a, k) triples the DP evaluates for k = 2..kmax segments."""
    total = 0
    for k in range(2, kmax + 1):
        lo = (k - 1) * min_size
        b = np.arange(k * min_size, T + 1)
        total += int(np.sum(b - min_size - lo + 1))
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
          f"{cells / 1e6:.0f} M cells)")
    print(f"T={T}: ruptures KernelCPD predict(n_bkps=20) once {rpt_t * 1e3:8.1f} ms -> ratio {rpt_t / ours_t:6.1f}x"
          f"   (same change points: {same})")
    if per_m:
        per = best_time(lambda: [rpt.KernelCPD(kernel="cosine", min_size=1).fit(X).predict(n_bkps=m) for m in MS], 1)
        print(f"T={T}: ruptures KernelCPD fit+predict per m (10, 15, 20) {per * 1e3:8.1f} ms -> ratio "
              f"{per / ours_t:6.1f}x")


CHILD = r"""
import resource, sys, time, numpy as np
sys.path.insert(0, {repo!r})
from stages.tsc import change_points
T, path = {T}, {path!r}
rng = np.random.default_rng(0)
labels = np.sort(rng.integers(0, 40, size=T))
E = rng.normal(size=(40, 64))[labels] + 0.7 * rng.normal(size=(T, 64))   # (T, 64)
E /= np.linalg.norm(E, axis=1, keepdims=True)
S = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(T, T))
for r0 in range(0, T, 512):                                              # build S in row blocks
    S[r0:r0 + 512] = (E[r0:r0 + 512] @ E.T).astype(np.float16)
S.flush(); del S
S = np.load(path, mmap_mode="r")
t0 = time.perf_counter()
cps = change_points(S, ms=(10, 15, 20))
dt = time.perf_counter() - t0
print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, len(cps[20]))
"""


def peak_rss(T: int) -> None:
    repo = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        code = CHILD.format(repo=repo, T=T, path=str(Path(tmp) / "s.npy"))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    dt, rss_mb = float(out[0]), float(out[1])
    print(f"T={T} float16 memmap: change points m=10,15,20 in {dt:.2f} s, child peak RSS {rss_mb:.0f} MiB "
          f"({rss_mb / 1024:.2f} GiB; target <= 3 GB; includes the {T * T * 2 / 2**20:.0f} MiB mapped S pages)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="T = 2000 only, no per-m ruptures run, T = 6000 for RSS")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    speed(2000, args.repeats, per_m=not args.quick)
    if not args.quick:
        speed(4000, args.repeats, per_m=False)
    peak_rss(6000 if args.quick else 11000)
    print(f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
