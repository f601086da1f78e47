"""Long-video memory: the BAPG per-video stages on THUMOS14-length videos, peak RSS against <= 3 GB.

    PYTHONPATH=. python benchmarks/bench_long_video.py [--steps 11000 12548] [--workdir DIR]

T = 11000 feature steps is a 25-minute THUMOS14 video at 7.5 steps/s; T = 12548 is the longest THUMOS14 video
(1673 s) at 7.5 steps/s. For each T the parent writes synthetic (T, 1024) float32 features (video-like:
contiguous regimes around random non-negative centres, plus noise) with storage.features.write_features into a
real Zarr store, then runs the real stage functions for one video in a CHILD process, so that the child's
ru_maxrss (RUSAGE_SELF, a high-water mark) is the stages' own:

  similarity      stages.similarity.write_similarity on embeddings = features @ W, W a fixed seeded (1024, 128)
                  random map standing in for the trained encoder (its MLP holds a few MB of weights and one
                  (T, hidden) activation at a time: nothing at this size), tile by tile into a (T, T) float16
                  Zarr array (what similarity_matrix_to_store does, minus the checkpoint)
  proposals       stages.proposals.tsc_proposals_to_store(rates=[8, 16, 32] per minute: the pipeline default, 223 /
                  446 / 892 change points at T = 12548) reading S back from that store, proposals scored from S
  features/p128   stages.proposal_features.proposal_features_to_store(projection_dim=128)   (pipeline default)
  features/p0     the same with projection_dim=0 (full 1024-d Fv pooled)

Printed per stage: wall time and the child's peak RSS so far (the high-water mark after that stage; the stages
run one after another in one child, as one Dask worker runs them). The features are generated and written by
another child, so this parent stays small: Linux carries the RSS a process had at fork into its child's
ru_maxrss, and a large parent would inflate the figures. Also: the RSS of a child that only imports
the same modules (what the stages add is the difference), of one that also loads the Numba TSC kernel from its
cache, and the on-disk size of the similarity store. PASS/FAIL compares the whole child's peak with 3 GB
(3e9 bytes). Timings are printed, never asserted.

--workdir DIR keeps the stores in DIR; without it they go to a temporary folder that is removed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_BYTES = 3e9  # 3 GB
FEATURE_DIM = 1024
EMBED_DIM = 128
STEPS_PER_SECOND = 7.5  # THUMOS14 I3D grid: 30 fps, stride 4
GRID = {"fps": 30.0, "window": 16, "stride": 4}
RATES = [8.0, 16.0, 32.0]  # change points per minute: the pipeline default (luigi.cfg [TSCProposals])
VIDEO = "video_long"


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def synthetic_features(T: int, dim: int = FEATURE_DIM, seed: int = 0):
    """(T, dim) float32, non-negative like pooled I3D activations: contiguous regimes of ~10-40 s plus noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    regimes = max(2, T // 150)
    labels = np.sort(rng.integers(0, regimes, size=T))  # (T,) contiguous runs
    centres = np.abs(rng.standard_normal((regimes, dim), dtype=np.float32))  # (R, dim)
    x = centres[labels]  # (T, dim)
    x += 0.5 * rng.standard_normal((T, dim), dtype=np.float32)
    np.maximum(x, 0.0, out=x)
    x[:, 0] += 1e-3  # never an all-zero step (its cosine would be undefined)
    return x


def write_inputs(T: int, folder: Path) -> Path:
    from tal_pipeline.stages.data.timegrid import TimeGrid
    from tal_pipeline.storage.features import write_features
    from tal_pipeline.storage.zarr_store import ArtifactStore

    store = folder / "features.zarr"
    ArtifactStore(store).begin({"stage": "features", "params": {"T": T}})
    write_features(store, VIDEO, synthetic_features(T), TimeGrid(**GRID))
    ArtifactStore(store).mark_complete([VIDEO])
    return store


# -- the child processes ---------------------------------------------------------------------------------------

def _import_stage_modules():
    import numpy  # noqa: F401
    import zarr  # noqa: F401

    import tal_pipeline.stages.bapg.proposal_features  # noqa: F401
    import tal_pipeline.stages.bapg.proposals  # noqa: F401
    import tal_pipeline.stages.bapg.similarity  # noqa: F401
    import tal_pipeline.stages.bapg.tsc  # noqa: F401
    import tal_pipeline.storage.features  # noqa: F401


def child_baseline() -> dict:
    _import_stage_modules()
    imports = peak_rss_bytes()
    import numpy as np

    from tal_pipeline.stages.bapg.tsc import change_points

    change_points(np.eye(8, dtype=np.float32) + 0.1, ms=[2])  # loads the cached Numba kernels
    return {"imports": imports, "numba": peak_rss_bytes()}


def child_stages(folder: Path, T: int) -> dict:
    _import_stage_modules()
    import numpy as np

    from tal_pipeline.stages.bapg.proposal_features import proposal_features_to_store
    from tal_pipeline.stages.bapg.proposals import tsc_proposals_to_store
    from tal_pipeline.stages.bapg.scales import Scales
    from tal_pipeline.stages.bapg.similarity import write_similarity
    from tal_pipeline.storage.features import read_features
    from tal_pipeline.storage.zarr_store import ArtifactStore

    out = {"start": peak_rss_bytes(), "stages": []}
    features_store = folder / "features.zarr"

    def timed(name, fn):
        t0 = time.perf_counter()
        fn()
        out["stages"].append({"stage": name, "wall_s": time.perf_counter() - t0, "peak_rss": peak_rss_bytes()})

    def similarity():
        features, grid = read_features(features_store, VIDEO)  # (T, 1024) float32
        w = np.random.default_rng(1).standard_normal((features.shape[1], EMBED_DIM)).astype(np.float32)
        embeddings = features @ (w / np.sqrt(features.shape[1]))  # (T, 128): the encoder's stand-in
        del features
        write_similarity(folder / "similarity.zarr", VIDEO, embeddings, grid, embedding="random map")

    for name in ("similarity", "proposals", "bapg_p128", "bapg_p0"):
        ArtifactStore(folder / f"{name}.zarr").begin({"stage": name, "params": {}})
    timed("similarity", similarity)
    timed("proposals (TSC at 8/16/32 per minute)", lambda: tsc_proposals_to_store(
        VIDEO, similarity_store=str(folder / "similarity.zarr"), store_path=str(folder / "proposals.zarr"),
        scales=Scales(rates=RATES), durations={VIDEO: T / STEPS_PER_SECOND}))
    for dim in (128, 0):
        timed(f"proposal features (projection_dim {dim})", lambda dim=dim: proposal_features_to_store(
            VIDEO, features_store=str(features_store), proposals_store=str(folder / "proposals.zarr"),
            store_path=str(folder / f"bapg_p{dim}.zarr"), projection_dim=dim))
    out["n_proposals"] = int(ArtifactStore(folder / "proposals.zarr").read(VIDEO).shape[0])
    out["bapg_shapes"] = {dim: list(ArtifactStore(folder / f"bapg_p{dim}.zarr").read(VIDEO).shape) for dim in (128, 0)}
    return out


def run_child(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the parent --------------------------------------------------------------------------------------------------

def mib(n: float) -> str:
    return f"{n / 2**20:7.0f} MiB"


def bench(T: int, root: Path) -> bool:
    folder = root / f"T{T}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    run_child("prepare", str(folder), str(T))  # not here: this process must stay small (see the docstring)
    print(f"\nT = {T} steps ({T / STEPS_PER_SECOND / 60:.1f} min at {STEPS_PER_SECOND} steps/s), "
          f"features ({T}, {FEATURE_DIM}) float32 = {mib(T * FEATURE_DIM * 4).strip()}, generated and written by a "
          f"child in {time.perf_counter() - t0:.1f} s; S = ({T}, {T}) float16 = {mib(T * T * 2).strip()} uncompressed")
    r = run_child("stages", str(folder), str(T))
    print(f"  {'stage':<40} {'wall':>8}   child peak RSS so far")
    print(f"  {'(child after imports)':<40} {'':>8}   {mib(r['start'])}")
    print(f"  (parent: peak RSS {mib(peak_rss_bytes()).strip()}, carried into the child's figures at most)")
    for s in r["stages"]:
        print(f"  {s['stage']:<40} {s['wall_s']:7.1f}s   {mib(s['peak_rss'])}")
    peak = max(s["peak_rss"] for s in r["stages"])
    sim_disk = folder_bytes(folder / "similarity.zarr")
    print(f"  similarity store on disk: {mib(sim_disk).strip()} ({sim_disk / (T * T * 2):.0%} of uncompressed); "
          f"{r['n_proposals']} proposals; B shapes {r['bapg_shapes']}")
    ok = peak <= TARGET_BYTES
    print(f"  {'PASS' if ok else 'FAIL'}: child peak RSS {peak / 1e9:.2f} GB ({mib(peak).strip()}) "
          f"{'<=' if ok else '>'} target 3 GB")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[11000, 12548], help="feature steps T per video")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the stores here (default: a removed temp dir)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "baseline":
            result = child_baseline()
        elif kind == "prepare":
            result = {"features": str(write_inputs(int(rest[1]), Path(rest[0])))}
        else:
            result = child_stages(Path(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return

    base = run_child("baseline")
    print(f"baseline child: imports only {mib(base['imports']).strip()}; "
          f"+ Numba TSC kernel loaded {mib(base['numba']).strip()}  (cpus: {os.cpu_count()})")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_long_video-"))
    try:
        results = [bench(T, root) for T in args.steps]
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'PASS' if all(results) else 'FAIL'}: peak RSS <= 3 GB for T = {', '.join(map(str, args.steps))}")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_long_video", main, record="--child" not in sys.argv)  # --no-readme: print only
