"""Scheduling at ActivityNet scale: how long luigi takes to build FullRun's graph before its first task starts, for
ActivityNet-shaped feature datasets of 2,000 to 20,000 videos, with and without the per-process cache of the
dataset identity (pipeline/dataset.py); and opening, listing and reading a Zarr store of 20,000 videos.

    PYTHONPATH=. python benchmarks/bench_scheduling.py [--root runs/data/anet_sched] [--sizes 2000 5000 10000 20000]
        [--width 16] [--uncached-up-to 2000]

1. Writes each dataset (`tal-pipeline synth --features DIR --preset anet --videos N --width 16`: 16-d features keep
   20,000 videos at ~180 MB on disk) under --root unless it is there.
2. Schedules FullRun with the ActivityNet preset (`--dataset-preset anet`: the Report over afsd and actionformer,
   with and without BAPG, 3 seeds, the untrained rows, the four boundary sources' stores, the video-level classifier
   and the class fusion of every class-agnostic run: the biggest graph the pipeline has) as `luigi.build` does
   before it runs anything: a luigi Worker with a local scheduler and `Worker.add(FullRun())`, which walks the graph
   calling each task's complete() (its output(): the hashed artifact path, whose hash holds the dataset identity)
   and requires(). The workdir is empty, so no task is complete and every task of the graph is scheduled (a
   finished run stops at FullRun's own complete()). Cached: a fresh cache (one walk of the feature folder, then
   stats of its directory); uncached: every identity() call walks the folder (the pipeline before the cache), run
   for real up to --uncached-up-to videos and, above that, one walk timed and multiplied by the walks saved.
3. A Zarr store of 20,000 (the largest size) videos in the pipeline's layout (storage.features.write_features, one
   array per video), written once: its open, the pipeline's listing (ArtifactStore.videos), zarr's own listing
   (array_keys, which reads each member's metadata) and one video's read.
Timings are printed, never asserted: the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ensure_dataset(root: Path, videos: int, width: int) -> Path:
    """The ActivityNet-shaped dataset of `videos` videos under root (written unless complete); its folder."""
    from tal_pipeline.synthetic.anet_like import generate_anet_like

    folder = root / f"v{videos}_w{width}"
    ann = folder / "annotations.json"
    if not (ann.is_file() and len(json.loads(ann.read_text())["database"]) == videos):
        t0 = time.perf_counter()
        generate_anet_like(folder, videos=videos, width=width)
        print(f"wrote {folder} ({videos} videos, width {width}) in {time.perf_counter() - t0:.1f} s", flush=True)
    return folder


def luigi_args(data: Path, workdir: Path) -> list[str]:
    return ["FullRun", "--dataset-preset", "anet", "--dataset-features", str(data / "features"),
            "--dataset-annotations", str(data / "annotations.json"), "--paths-workdir", str(workdir),
            "--detectors-recipe", "small", "--no-lock"]


def schedule(args: list[str], cached: bool = True) -> dict:
    """Worker.add(FullRun()) as luigi.build does before running: {"seconds", "tasks", "calls" (of identity()),
    "walks" (of the feature folder), "scheduled", "task_ids", "families"}."""
    import luigi.scheduler
    import luigi.worker
    from luigi.cmdline_parser import CmdlineParser
    from luigi.task_register import Register

    from pipeline import dataset
    from pipeline.report_tasks import FullRun

    logging.getLogger("luigi-interface").setLevel(logging.WARNING)
    with CmdlineParser.global_instance(args), dataset.identity_cache(cached):
        Register.clear_instance_cache()  # as in a fresh process: no task instance, no cached identity
        dataset.forget_identities()
        before = dataset.identity_counts()
        t0 = time.perf_counter()
        scheduler = luigi.scheduler.Scheduler()
        with luigi.worker.Worker(scheduler=scheduler, worker_processes=1, no_install_shutdown_handler=True) as worker:
            ok = worker.add(FullRun())
        seconds = time.perf_counter() - t0
        tasks = scheduler.task_list(None, None)
    after = dataset.identity_counts()
    return {"seconds": seconds, "tasks": len(tasks), "calls": after["calls"] - before["calls"],
            "walks": after["walks"] - before["walks"], "scheduled": ok, "task_ids": sorted(tasks),
            "families": sorted({info["name"] for info in tasks.values()})}


def one_walk(data: Path, repeats: int = 3) -> float:
    """Seconds of one uncached identity() of the dataset (the walk every output() made before the cache), the median
    of `repeats`."""
    import statistics

    from pipeline import dataset

    spec = dataset.DatasetSpec("", str(data / "annotations.json"), "training", "validation", str(data / "features"),
                               False)
    times = []
    with dataset.identity_cache(False):
        for _ in range(repeats):
            t0 = time.perf_counter()
            dataset.identity(spec)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def zarr_store(data: Path, store_path: Path) -> None:
    """The features of `data` in the pipeline's Zarr layout (as ImportFeatures writes them), written once."""
    import numpy as np

    from tal_pipeline.stages.data.timegrid import TimeGrid
    from tal_pipeline.storage.features import write_features
    from tal_pipeline.storage.zarr_store import ArtifactStore

    store = ArtifactStore(store_path)
    videos = sorted(json.loads((data / "annotations.json").read_text())["database"])
    if store.is_complete() and len(store.completion()["videos"]) == len(videos):
        return
    t0 = time.perf_counter()
    store.begin({"stage": "features", "params": {"bench": "bench_scheduling"}})
    done = store.done_videos()
    grid = TimeGrid(15.0, 16, 16)
    for video in videos:
        if video not in done:
            write_features(store_path, video, np.load(data / "features" / f"{video}.npy"), grid)
    store.mark_complete(videos)
    seconds = time.perf_counter() - t0
    print(f"wrote {store_path} ({len(videos)} videos) in {seconds:.0f} s ({1e3 * seconds / len(videos):.1f} ms a "
          "video)", flush=True)


def zarr_figures(store_path: Path) -> list[tuple[str, float, str]]:
    import warnings

    import zarr

    # zarr's listing names the store's .complete flag as "not a component of a Zarr hierarchy": expected.
    warnings.filterwarnings("ignore", message="Object at .complete")

    from tal_pipeline.storage.features import read_features
    from tal_pipeline.storage.zarr_store import ArtifactStore

    rows = []

    def timed(name, fn, note=lambda r: ""):
        t0 = time.perf_counter()
        result = fn()
        rows.append((name, time.perf_counter() - t0, note(result)))
        return result

    store = ArtifactStore(store_path)
    timed("complete() (the .complete flag)", store.is_complete)
    group = timed("zarr.open_group(mode='r')", lambda: zarr.open_group(str(store_path), mode="r"))
    videos = timed("ArtifactStore.videos() (the pipeline's listing)", store.videos, lambda r: f"{len(r)} videos")
    timed("zarr group.array_keys() (reads each member's zarr.json)", lambda: sorted(group.array_keys()),
          lambda r: f"{len(r)} arrays")
    middle = videos[len(videos) // 2]
    timed(f"read_features(one video: {middle})", lambda: read_features(store_path, middle),
          lambda r: f"shape {r[0].shape}")
    timed("zarr group[video][...] (one video, plain zarr)", lambda: group[middle][...])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="runs/data/anet_sched", help="where the datasets and the Zarr store go")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000, 20000])
    ap.add_argument("--width", type=int, default=16, help="feature width of the datasets")
    ap.add_argument("--repeats", type=int, default=5, help="cached builds per size (the fastest is printed)")
    ap.add_argument("--uncached-up-to", type=int, default=2000,
                    help="schedule without the cache for real up to this many videos (above: walks x one walk)")
    args = ap.parse_args()
    root = (REPO / args.root) if not Path(args.root).is_absolute() else Path(args.root)
    t0 = time.perf_counter()
    import pipeline  # noqa: F401  (luigi and the task modules: what `luigi --module pipeline` imports first)

    print(f"import pipeline (luigi and the tasks): {time.perf_counter() - t0:.2f} s")
    datasets = {n: ensure_dataset(root, n, args.width) for n in args.sizes}
    time.sleep(1.1)  # a folder written less than a second ago is not cached (pipeline.dataset.RACY_NS)

    print(f"\nFullRun's graph, scheduled as luigi.build does before its first task (empty workdir: every task is "
          f"scheduled); ActivityNet-shaped features, width {args.width}; cached: the fastest of {args.repeats} fresh "
          f"builds\n")
    print("| videos | tasks | identity() calls | cached: schedule (s) | cached: folder walks | one walk (s) | "
          "uncached: schedule (s) | speedup |")
    print("|---|---|---|---|---|---|---|---|")
    cached_s, walks = {}, {}
    for n, data in datasets.items():
        workdir = root / f"workdir-{n}"  # never written: nothing is run
        # The fastest of `repeats` fresh builds (each with its one walk): the machine may be shared.
        cached = min((schedule(luigi_args(data, workdir), cached=True) for _ in range(args.repeats)),
                     key=lambda r: r["seconds"])
        walks[n] = walk = one_walk(data)
        # Without the cache every identity() call walks: the cached time plus the walks it saved (one walk: median of
        # three).
        estimate = cached["seconds"] + (cached["calls"] - cached["walks"]) * walk
        if n <= args.uncached_up_to:
            uncached = schedule(luigi_args(data, workdir), cached=False)
            assert uncached["task_ids"] == cached["task_ids"], "the cache changed the graph"
            assert uncached["walks"] == uncached["calls"] == cached["calls"]
            uncached_text, uncached_s = f"{uncached['seconds']:.1f} (measured; estimate {estimate:.1f})", \
                uncached["seconds"]
        else:
            uncached_text, uncached_s = f"{estimate:.0f} (estimate)", estimate
        cached_s[n] = cached["seconds"]
        print(f"| {n} | {cached['tasks']} | {cached['calls']} | {cached['seconds']:.2f} | {cached['walks']} | "
              f"{walk:.3f} | {uncached_text} | {uncached_s / cached['seconds']:.0f}x |", flush=True)
    sizes = sorted(cached_s)
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        graph = min(cached_s.values())
        print(f"\ncached: {' / '.join(f'{cached_s[n]:.2f}' for n in sizes)} s at {' / '.join(map(str, sizes))} videos, "
              f"x{cached_s[hi] / cached_s[lo]:.2f} from {lo} to {hi} videos: the graph itself (~{graph:.1f} s, "
              f"independent of the videos) plus one walk of the feature folder, the only per-video part: "
              f"{walks[hi]:.2f} s at {hi} videos ({1e6 * walks[hi] / hi:.0f} us per video)")
        print(f"uncached: each of the {cached['calls']} identity() calls walks the folder: {walks[lo]:.3f} s a walk at "
              f"{lo} videos, {walks[hi]:.3f} s at {hi}: x{walks[hi] / walks[lo]:.1f} for x{hi / lo:.0f} the videos")

    biggest = max(datasets)
    store_path = root / f"features-{biggest}_w{args.width}.zarr"
    zarr_store(datasets[biggest], store_path)
    print(f"\nZarr store of {biggest} videos ({store_path.name}, one array per video):\n")
    print("| operation | seconds | |")
    print("|---|---|---|")
    for name, seconds, note in zarr_figures(store_path):
        print(f"| {name} | {seconds:.4f} | {note} |")

    from pipeline.data_tasks import dataset_annotations
    from pipeline.dataset import DatasetSpec

    data = datasets[biggest]
    spec = DatasetSpec("", str(data / "annotations.json"), "training", "validation", str(data / "features"), False)
    t0 = time.perf_counter()
    ann = dataset_annotations(spec)
    seconds = time.perf_counter() - t0
    print(f"\nnot scheduling, for scale: dataset_annotations() of {biggest} videos (what a per-video stage's run() "
          f"reads first; {len(ann.videos)} in the training and validation subsets) takes {seconds:.2f} s")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_scheduling", main)
