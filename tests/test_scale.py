"""The same stages on every Dask scheduler: the BAPG stages beyond SampleFrames (SimilarityMatrices without the
encoder, so nothing trains, -> TSCProposals -> ProposalFeatures) run with the threads scheduler, the processes
scheduler (spawned processes: the worker functions and their arguments must pickle, Numba loads its cache in
each) and a distributed LocalCluster on loopback write identical arrays; and threads_per_worker never
oversubscribes the machine's cores.

The upstream stores (frames, I3D features) are computed once with the default threads scheduler and copied
into each run's workdir, so the schedulers are compared on the stages under test with the same inputs (torch
intra-op threads differ between a local run and a distributed worker, which may change the last bits of the
features, not what this file checks)."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tal_pipeline.stages.parallel import LOCAL_SCHEDULERS, threads_per_worker, usable_cores, worker_count
from tal_pipeline.storage.zarr_store import ArtifactStore
from tests.conftest import dataset_args, run_luigi

# The raw boundary source: TSC on the raw features' S (TSCProposals sets use_encoder from its source, so a
# --SimilarityMatrices-use-encoder flag would not reach it and each run would train its own encoders).
STAGE = ["ProposalFeatures", "--ProposalFeatures-source", "raw", "--SampleFrames-size", "32"]
COMPARED = {"similarity": np.float16, "proposals": np.float64, "bapg_features": np.float32}  # stem -> dtype


def _store(workdir, stem):
    found = sorted(workdir.glob(f"{stem}-*.zarr"))
    assert len(found) == 1, f"expected one {stem} store in {workdir}, found {[p.name for p in found]}"
    return found[0]


def _arrays(path):
    store = ArtifactStore(path)
    assert store.is_complete(), f"{path} is not flagged complete"
    return {v: (store.read(v)[...], dict(store.read(v).attrs)) for v in store.videos()}


def _assert_same_stores(reference_dir, other_dir):
    """Every compared store: same path, same videos, arrays equal element by element, same attributes."""
    for stem, dtype in COMPARED.items():
        reference, other = _store(reference_dir, stem), _store(other_dir, stem)
        assert reference.name == other.name  # the scheduler does not shape the artifact's path
        left, right = _arrays(reference), _arrays(other)
        assert left.keys() == right.keys() and len(left) == 4
        for video, (array, attrs) in left.items():
            other_array, other_attrs = right[video]
            assert array.dtype == other_array.dtype == dtype and array.shape == other_array.shape
            np.testing.assert_array_equal(array, other_array, err_msg=f"{stem} {video}")
            assert attrs == other_attrs, f"{stem} {video}"  # includes the change points of every m
            if stem == "similarity":
                assert attrs["embedding"] == "features", attrs  # raw S: no encoder trained in any run
    recall = "recall.csv"
    reference_recall = (_store(reference_dir, "proposals") / recall).read_text()
    assert reference_recall == (_store(other_dir, "proposals") / recall).read_text()


@pytest.fixture(scope="module")
def threads_run(tmp_path_factory, tiny_synthetic):
    """SampleFrames -> ExtractFeatures -> SimilarityMatrices -> TSCProposals -> ProposalFeatures, threads."""
    root = tmp_path_factory.mktemp("scale")
    workdir = root / "threads"
    result = run_luigi([*STAGE, *dataset_args(tiny_synthetic, workdir)], root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, workdir


def _workdir_with_upstream(threads_run, name):
    """A fresh workdir holding copies of the threads run's frames and features stores (not its similarity)."""
    root, reference = threads_run
    workdir = root / name
    for stem in ("frames", "features"):
        src = _store(reference, stem)
        shutil.copytree(src, workdir / src.name)
    return root, workdir


def _run_stages(threads_run, tiny_synthetic, name, scheduler):
    root, workdir = _workdir_with_upstream(threads_run, name)
    result = run_luigi([*STAGE, *dataset_args(tiny_synthetic, workdir), "--dask-scheduler", scheduler], root)
    assert result.returncode == 0, result.stderr[-3000:]
    # Only the stages under test ran: the copied upstream stores were found complete.
    for stem in COMPARED:
        assert f"[pipeline] {stem}: 4 videos, 0 already done, 4 to compute" in result.stderr
    assert "[pipeline] frames:" not in result.stderr and "[pipeline] features:" not in result.stderr
    return workdir


def test_processes_scheduler_matches_threads(threads_run, tiny_synthetic):
    workdir = _run_stages(threads_run, tiny_synthetic, "processes", "processes")
    _assert_same_stores(threads_run[1], workdir)


def test_distributed_cluster_matches_threads(threads_run, tiny_synthetic):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        workdir = _run_stages(threads_run, tiny_synthetic, "cluster", address)
        # the videos ran on this cluster (run_per_video's tasks are named after _guarded, prefix "guarded")
        assert any("guarded" in prefix for prefix in cluster.scheduler.task_prefixes)
    assert cluster.status.name == "closed"
    _assert_same_stores(threads_run[1], workdir)


def test_scheduler_option_reaches_the_stage(threads_run, tiny_synthetic):
    """`[dask] scheduler` is `--dask-scheduler` on the command line: a wrong value fails the stage by name."""
    root, workdir = _workdir_with_upstream(threads_run, "bogus")
    result = run_luigi([*STAGE, *dataset_args(tiny_synthetic, workdir), "--dask-scheduler", "bogus"], root)
    assert result.returncode == 30  # [retcode] task_failed
    assert "unknown Dask scheduler 'bogus'" in result.stderr
    assert not ArtifactStore(_store(workdir, "similarity")).is_complete()


@pytest.mark.parametrize("cpus", [None, 1, 2, 3, 16])
def test_threads_per_worker_never_oversubscribes(monkeypatch, cpus):
    if cpus is not None:  # None: this process's own cores
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    cores = usable_cores()
    for scheduler in ("threads", "processes"):
        for n in [None, 0, *range(1, cores + 1)]:
            workers, threads = worker_count(scheduler, n), threads_per_worker(scheduler, n)
            assert workers >= 1 and threads >= 1
            assert workers * threads <= cores, (scheduler, n, workers, threads, cores)
        assert worker_count(scheduler, None) == cores  # default: one video per core ...
        assert threads_per_worker(scheduler, None) == 1  # ... each single-threaded
        # more workers than cores asked for: each gets one thread (the least there is)
        assert threads_per_worker(scheduler, cores + 3) == 1
    assert worker_count("synchronous", 4) == 1 and threads_per_worker("synchronous", 4) == cores
    assert set(LOCAL_SCHEDULERS) == {"threads", "processes", "synchronous"}
    for address in ("tcp://127.0.0.1:8786", "tls://scheduler:8786"):
        assert threads_per_worker(address) == 1
        assert threads_per_worker(address, 8) == 1


def test_usable_cores_follow_the_affinity_then_the_cpu_count(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 5}, raising=False)  # e.g. taskset -c 2,5
    assert usable_cores() == 2 and worker_count("threads") == 2 and threads_per_worker("threads", 1) == 2
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # no affinity call (macOS, Windows)
    assert usable_cores() == 8 and worker_count("threads") == 8


def test_cpu_count_unknown_means_one_thread(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert worker_count("threads") == 1 and threads_per_worker("threads") == 1
    assert threads_per_worker("threads", 4) == 1
