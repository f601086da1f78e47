"""What the crc32c chunk checksums cost: write and read time of a THUMOS-sized similarity store with and without them.

    PYTHONPATH=. python benchmarks/bench_checksums.py [--videos 20] [--repeats 3]

The store: --videos (T, T) float16 similarity matrices, T drawn from 1,500-2,300 feature steps (THUMOS14's test
videos at 7.5 steps/s run ~200-300 s), S = cosine similarity of a smooth random walk of 128-d embeddings (so it
compresses like a real one), in the pipeline's layout: one array per video, (1024, 1024) tiles (SimilarityMatrices'
default block), Blosc/zstd level 5 with bit-shuffle. "with" adds the crc32c codec after Blosc, as the pipeline
writes (storage.zarr_store); "without" is the same array without it, as stores were written before.
What is timed, paired in one process: each video is written into both stores back to back, the order alternating
per video and per repeat, then read back from both (medians of --repeats, each the sum over the videos):
  write:  every video's array into a fresh store (ArtifactStore.video_array, tile by tile, as write_similarity);
  read:   every video's whole array back through ArtifactStore.read (the pipeline's reader: with checksums it also
          checks that every chunk file is there, and zarr checks each chunk's crc32c); the files were just written,
          so this is from the page cache: decode and checksum cost, not disk speed;
  verify: `tal-pipeline verify`'s pass over the checksummed store (reads every chunk file, crc32c only, no decode).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tal_pipeline.storage import zarr_store  # noqa: E402
from tal_pipeline.storage.verify import verify  # noqa: E402
from tal_pipeline.storage.zarr_store import ArtifactStore  # noqa: E402

BLOCK = 1024


def similarity_matrices(videos: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{video: (T, T) float16} cosine similarities of smooth random-walk embeddings."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, T in enumerate(rng.integers(1500, 2301, size=videos)):
        walk = np.cumsum(rng.standard_normal((int(T), 128), dtype=np.float32), axis=0)  # (T, 128)
        walk /= np.linalg.norm(walk, axis=1, keepdims=True)
        out[f"video_{i:04d}"] = (walk @ walk.T).astype(np.float16)  # (T, T)
    return out


@contextmanager
def checksums(enabled: bool):
    """The pipeline's writer with or without the crc32c codec (the codec list is the only difference)."""
    original = zarr_store.codecs
    if not enabled:
        zarr_store.codecs = lambda: [zarr_store.compressor()]
    try:
        yield
    finally:
        zarr_store.codecs = original


def write_video(store: ArtifactStore, video: str, S: np.ndarray) -> float:
    """Seconds to write one (T, T) matrix tile by tile, as write_similarity does."""
    T = S.shape[0]
    start = time.perf_counter()
    with store.video_array(video, (T, T), np.float16, (BLOCK, BLOCK), ["time", "time_other"]) as array:
        for r in range(0, T, BLOCK):
            for c in range(0, T, BLOCK):
                array[r:r + BLOCK, c:c + BLOCK] = S[r:r + BLOCK, c:c + BLOCK]
    return time.perf_counter() - start


def read_video(store: ArtifactStore, video: str, S: np.ndarray) -> float:
    start = time.perf_counter()
    assert store.read(video)[...].shape == S.shape
    return time.perf_counter() - start


def paired_repeat(folder: Path, data: dict[str, np.ndarray], flip: bool) -> dict:
    """One repeat: each video written (then read) into both stores back to back, the order alternating per video,
    so a change of the machine's load falls on both alike. Returns {(variant, op): seconds for all videos}."""
    stores = {v: ArtifactStore(folder / f"similarity-{v}.zarr") for v in ("without", "with")}
    for store in stores.values():
        store.begin({"stage": "similarity", "params": {}})
    took = {(v, op): 0.0 for v in stores for op in ("write", "read")}
    for i, (video, S) in enumerate(data.items()):
        order = ("without", "with") if (i % 2 == 0) != flip else ("with", "without")
        for variant in order:
            with checksums(variant == "with"):
                took[variant, "write"] += write_video(stores[variant], video, S)
        for variant in order:
            took[variant, "read"] += read_video(stores[variant], video, S)
    return took


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = similarity_matrices(args.videos)
    raw = sum(S.nbytes for S in data.values())
    print(f"{args.videos} videos, T {min(S.shape[0] for S in data.values())}-{max(S.shape[0] for S in data.values())}, "
          f"{raw / 2**20:.0f} MiB of float16; chunks ({BLOCK}, {BLOCK}); load average {os.getloadavg()[0]:.1f}")
    times = {(v, op): [] for v in ("without", "with") for op in ("write", "read")}
    verify_times, sizes = [], {}
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as tmp:
        paired_repeat(Path(tmp) / "warm-up", dict([next(iter(data.items()))]), False)  # untimed: imports, threads
        for repeat in range(args.repeats):
            folder = Path(tmp) / f"repeat-{repeat}"
            for key, seconds in paired_repeat(folder, data, repeat % 2 == 1).items():
                times[key].append(seconds)
            sizes = {v: store_bytes(folder / f"similarity-{v}.zarr") for v in ("without", "with")}
            start = time.perf_counter()
            assert verify(folder / "similarity-with.zarr")["damaged"] == []
            verify_times.append(time.perf_counter() - start)
            shutil.rmtree(folder)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"medians of {args.repeats} paired repeats, seconds for the whole store (MiB/s of raw float16):")
    for op in ("write", "read"):
        a, b = med["without", op], med["with", op]
        print(f"  {op:6s} without checksums {a:6.2f} s ({raw / 2**20 / a:5.0f} MiB/s)   with {b:6.2f} s "
              f"({raw / 2**20 / b:5.0f} MiB/s)   cost {100 * (b - a) / a:+.1f} %")
        print("         each repeat, without / with: " + ", ".join(
            f"{x:.2f} / {y:.2f}" for x, y in zip(times["without", op], times["with", op])))
    v = statistics.median(verify_times)
    print(f"  verify (crc32c of every chunk file) {v:.2f} s ({sizes['with'] / 2**20 / v:.0f} MiB/s of stored bytes)")
    print(f"  on disk: without {sizes['without'] / 2**20:.1f} MiB, with {sizes['with'] / 2**20:.1f} MiB "
          f"(+{sizes['with'] - sizes['without']} bytes: 4 per chunk)")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_checksums", main)  # --no-readme: print only
