"""What every stage task shares: hashed artifact paths, --force, per-video resume, failure reports."""
from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import luigi

from pipeline import config, dataset, workdir_lock
from pipeline.hashing import canonical, param_hash, spec_hash
from tal_pipeline.stages.parallel import run_per_video
from tal_pipeline.storage.atomic import atomic_folder
from tal_pipeline.storage.manifest import write_manifest
from tal_pipeline.storage.zarr_store import ArtifactStore

log = logging.getLogger("pipeline")


def gpu_resources(device: str = "auto") -> dict:
    """{"gpu": 1} when a stage on `device` may use a GPU and torch sees one, else {} (luigi resources).

    Every stage that may use CUDA holds one unit while it runs, so with `[resources] gpu = 1` (the default) two of
    them never share a card (two CUDA contexts; an exclusive-process GPU refuses the second), and `gpu = N` lets N
    small runs share it. GPUs are counted as torch counts them (CUDA_VISIBLE_DEVICES applied;
    stages.runtime.visible_gpu_count); on a CPU-only machine, or for device cpu, nothing is held and stages run
    side by side (`[core] workers`), each with its share of the cores (task_threads).
    """
    from tal_pipeline.stages.runtime import visible_gpu_count

    if str(device).strip().lower() == "cpu":
        return {}
    legacy = os.environ.get("TAL_PIPELINE_GPU_RESOURCE")  # the older switch: hold the resource whatever is seen
    return {"gpu": 1} if legacy or visible_gpu_count() > 0 else {}


def task_threads() -> int:
    """Torch threads for one task: the cores shared among luigi's workers. The detectors are small: on 2 cores
    two runs side by side on one thread each finish well before two runs one after another on two threads."""
    import luigi.interface

    from tal_pipeline.stages.parallel import usable_cores

    return max(1, usable_cores() // max(1, luigi.interface.core().workers))


class StageFailed(RuntimeError):
    """A stage finished the videos it could and failed for the others (listed in the report)."""


class ZarrStoreTarget(luigi.Target):
    """Exists only when the store's completeness flag is written (a folder alone proves nothing)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.store = ArtifactStore(path)

    def exists(self) -> bool:
        return self.store.is_complete()

    def taken_apart(self) -> bool:
        """Written, then left without its flag (by `verify --repair`, or a crash): videos to (re)compute."""
        return self.store.exists() and not self.store.is_complete()


class DoneFileTarget(luigi.Target):
    """A folder artifact (checkpoint, report) complete when its DONE file exists."""

    def __init__(self, path: str | Path):
        self.path = str(path)

    @property
    def folder(self) -> Path:
        return Path(self.path)

    def exists(self) -> bool:
        return (self.folder / "DONE").is_file()

    def taken_apart(self) -> bool:
        """The folder without its DONE file: `verify --repair` removed its damaged content."""
        return self.folder.is_dir() and not (self.folder / "DONE").is_file()

    def remove(self) -> None:
        (self.folder / "DONE").unlink(missing_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    @contextmanager
    def writer(self):
        """A temporary sibling folder, renamed into place with its DONE file only on success; the sha256 of every
        file goes into its SHA256SUMS first (storage.manifest), so a later change to any of them is found."""
        with atomic_folder(self.folder) as tmp:
            yield tmp
            write_manifest(tmp)
            (tmp / "DONE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")


# Imported once by the scheduling process instead of by every task process: with --workers > 1 luigi runs each task in
# a process forked from it, which inherits what is already imported (torch and the models take ~1 s to import, a
# FullRun on the synthetic data has ~30 tasks). Only imports: no torch op runs before the fork (OpenMP's thread pool
# must not exist in a process that forks).
PRELOADED_FOR_TASKS = ("torch", "numba", "tal_pipeline.models.detector_registry")


def preload_task_imports() -> None:
    """Import PRELOADED_FOR_TASKS (once; a no-op afterwards)."""
    import importlib

    for name in PRELOADED_FOR_TASKS:
        importlib.import_module(name)


def upstream_intact(task: luigi.Task) -> bool:
    """No artifact upstream of `task` is taken apart (see StageTask.complete). An absent one (never computed, or
    deleted to save space) does not count: only one that was there and lost part of its content."""
    for dep in luigi.task.flatten(task.requires()):
        if getattr(dep, "_intact", False):  # once intact, intact for the rest of the run
            continue
        output = dep.output()
        if getattr(output, "taken_apart", lambda: False)() or not upstream_intact(dep):
            return False
        dep._intact = True
    return True


def _kept_if_done(run):
    """run() that keeps an existing artifact: the task runs only so that luigi reaches a repaired upstream one."""
    @functools.wraps(run)
    def checked_run(self):
        if self.output().exists():
            log.info("%s: %s is intact, kept (rerun only to reach a repaired upstream artifact)", self.artifact,
                     self.output().path)
            return None
        return run(self)
    return checked_run


_MEMO: list[dict] = []  # the specs and hashes of the artifact hash being computed (see resolving)


@contextmanager
def resolving():
    """A memo shared by the nested calls of one artifact hash: each upstream task's spec and hash are resolved once
    per outermost block. Open only while the configuration is fixed: one hash, or one walk of a graph
    (pipeline.graph.build_plan); luigi's scheduler opens none, so a later configuration is never read stale."""
    outer = not _MEMO
    if outer:
        _MEMO.append({})
    try:
        yield _MEMO[0]
    finally:
        if outer:
            _MEMO.clear()


def _memoised_spec(spec):
    @functools.wraps(spec)
    def memoised(self):
        with resolving() as memo:
            key = ("spec", self.task_id)
            if key not in memo:
                memo[key] = spec(self)
            return memo[key]
    return memoised


class StageTask(luigi.Task):
    """A pipeline stage: output path = <workdir>/<artifact>-<hash of what shapes it>.

    Subclasses set `artifact` (path stem) and `suffix`, build their spec (pipeline.specs) in `spec()` and
    implement `run()` by calling a pure function in stages/ with it.
    """

    artifact = "artifact"
    suffix = ".zarr"
    force = luigi.BoolParameter(default=False, significant=False,
                                description="remove this stage's artifact first and recompute it")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "run" in vars(cls):
            cls.run = _kept_if_done(vars(cls)["run"])
        if "spec" in vars(cls):
            cls.spec = _memoised_spec(vars(cls)["spec"])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.force:
            # luigi checks complete() before run(): the old output must go before scheduling.
            self._remove_output()

    # -- identity ------------------------------------------------------------------------------
    @property
    def data(self) -> dataset.DatasetSpec:
        return dataset.current()

    def spec(self):
        """The frozen spec of this stage (pipeline.specs): exactly the values that shape its artifact. The one hook
        every concrete stage defines (tests/test_specs.py walks them all); a task with its own output() needs none."""
        raise NotImplementedError(f"{type(self).__name__} defines no spec()")

    def upstream_hashes(self) -> dict[str, str]:
        """{role: hash} of the artifacts this stage reads (its requires(), by key) and of the dataset."""
        with resolving() as memo:
            if "dataset" not in memo:
                memo["dataset"] = param_hash(dataset.identity(self.data))
            hashes = {"dataset": memo["dataset"]}
            for role, dep in named_requirements(self.requires()).items():
                if isinstance(dep, StageTask):
                    hashes[role] = dep.artifact_hash()
        return hashes

    def artifact_hash(self) -> str:
        with resolving() as memo:
            key = ("hash", self.task_id)
            if key not in memo:
                memo[key] = spec_hash(self.artifact, self.spec(), self.upstream_hashes())
            return memo[key]

    def spec_record(self) -> dict:
        """What config.json (and a store's attributes) record: the stage, its spec, its inputs' hashes."""
        return {"stage": self.artifact, "spec": canonical(self.spec()), "upstream": self.upstream_hashes()}

    def artifact_path(self) -> Path:
        workdir = config.PathsConfig().workdir
        workdir_lock.hold_shared(workdir)  # held until this process exits: gc deletes nothing meanwhile
        return Path(workdir) / f"{self.artifact}-{self.artifact_hash()}{self.suffix}"

    @contextmanager
    def writer(self):
        """The folder artifact's writer (DoneFileTarget.writer), its spec record merged into config.json."""
        with self.output().writer() as folder:
            yield folder
            file = folder / "config.json"
            written = json.loads(file.read_text()) if file.is_file() else {}
            file.write_text(json.dumps({**written, **self.spec_record()}, indent=1, default=str))

    def output(self):
        if self.suffix == ".zarr":
            return ZarrStoreTarget(self.artifact_path())
        return DoneFileTarget(self.artifact_path())

    def complete(self) -> bool:
        """The artifact exists and nothing upstream was taken apart by `verify --repair`: luigi stops at a complete
        task, so a downstream task that is done must look undone for a rerun to reach and recompute the repaired
        artifact; its own run() then keeps its artifact (_kept_if_done)."""
        return self.output().exists() and upstream_intact(self)

    def _remove_output(self) -> None:
        out = self.output()
        if isinstance(out, ZarrStoreTarget):
            out.store.remove()
        else:
            out.remove()
        log.info("--force: removed %s", out.path)

    # -- per-video execution -------------------------------------------------------------------
    def report_progress(self, done: int, total: int, unit: str = "videos", failed: int = 0) -> None:
        """luigi's progress channel, shown on luigid's task page: per-video stages call it as each video finishes,
        training after each epoch (a log line each time would drown the log; this is one value per task)."""
        self.set_progress_percentage(round(100 * done / max(total, 1)))
        self.set_status_message(f"{done}/{total} {unit}" + (f", {failed} failed" if failed else ""))

    def dask_scheduler(self) -> tuple[str, int | None]:
        cfg = config.DaskConfig()
        return cfg.scheduler, (cfg.workers or None)

    def run_videos(self, worker, videos: list[str], skip_bad_videos: bool, before_complete=None,
                   **kwargs) -> dict[str, str]:
        """Run `worker(video, store_path=..., **kwargs)` for each unfinished video, then flag the store.

        Finished videos (from an interrupted earlier run) are not recomputed. Failures are written
        to the failure report; the stage then fails naming them, unless told to skip them.
        before_complete(store, done_videos): a store-level step (e.g. a recall table) run after the
        videos and before the flag, so a crash there never leaves a store that looks complete.
        """
        store = self.output().store
        record = self.spec_record()
        store.begin({"stage": self.artifact, "params": {"params": record["spec"], "upstream": record["upstream"]},
                     "provenance": {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": os.uname().nodename}})
        done = store.done_videos()
        todo = [v for v in videos if v not in done]
        log.info("%s: %d videos, %d already done, %d to compute", self.artifact, len(videos),
                 len(done & set(videos)), len(todo))
        scheduler, workers = self.dask_scheduler()
        result = run_per_video(worker, todo, scheduler=scheduler, num_workers=workers, store_path=str(store.path),
                               on_progress=lambda finished, failed, _: self.report_progress(
                                   len(videos) - len(todo) + finished, len(videos), failed=failed), **kwargs)
        report = store.write_failure_report(self.artifact, result.failures)
        if result.failures and not skip_bad_videos:
            listing = "; ".join(f"{v}: {r}" for v, r in sorted(result.failures.items())[:10])
            raise StageFailed(
                f"{self.artifact}: {len(result.failures)} of {len(videos)} videos failed ({listing}). "
                f"The others are kept in {store.path}; report: {report}. "
                f"Fix them, or rerun with --skip-bad-videos to continue without them."
            )
        if before_complete is not None:
            before_complete(store, sorted(set(videos) - set(result.failures)))
        store.mark_complete(videos, skipped=result.failures)
        return result.failures


def named_requirements(requirements, prefix: str = "") -> dict:
    """{role: task} of a requires() value: dict keys and list positions joined by dots ("fold_encoders.0")."""
    if requirements is None:
        return {}
    if isinstance(requirements, luigi.Task):
        return {prefix or "input": requirements}
    items = requirements.items() if isinstance(requirements, dict) else enumerate(requirements)
    out = {}
    for key, value in items:
        out.update(named_requirements(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


@StageTask.event_handler(luigi.Event.DEPENDENCY_DISCOVERED)
def _preload_before_forking(task, dependency) -> None:
    """Fired in the scheduling process for a stage that will run (incomplete, with inputs), before any task forks."""
    preload_task_imports()


def write_csv(path: Path, rows: list[dict]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
