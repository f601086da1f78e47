"""Scale-out and crash safety on real processes: a distributed LocalCluster on loopback, SIGKILL
half-way through a stage, and reruns that finish only what is missing."""
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from tal_pipeline.storage.zarr_store import ArtifactStore
from tests.conftest import BIN, dataset_args, luigi_env, run_luigi


@pytest.fixture(scope="module")
def eight_videos(tmp_path_factory):
    from tal_pipeline.synthetic.videos import generate

    folder = tmp_path_factory.mktemp("eight")
    generate(folder, videos=8, seed=11, duration=16.0, size=128)
    return folder


def _arrays(path):
    store = ArtifactStore(path)
    return {v: store.read(v)[...] for v in store.videos()}


def test_distributed_cluster_matches_threads(tmp_path, eight_videos):
    from distributed import LocalCluster

    threads_dir, cluster_dir = tmp_path / "threads", tmp_path / "cluster"
    args = ["SampleFrames", "--SampleFrames-size", "48"]
    assert run_luigi([*args, *dataset_args(eight_videos, threads_dir)], tmp_path).returncode == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      processes=True) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        result = run_luigi([*args, *dataset_args(eight_videos, cluster_dir), "--dask-scheduler",
                            cluster.scheduler_address], tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    [a] = threads_dir.glob("frames-*.zarr")
    [b] = cluster_dir.glob("frames-*.zarr")
    assert a.name == b.name  # the scheduler does not shape the artifact
    left, right = _arrays(a), _arrays(b)
    assert left.keys() == right.keys() and len(left) == 8
    for video in left:
        np.testing.assert_array_equal(left[video], right[video])


def test_sigkill_half_way_then_resume(tmp_path, eight_videos):
    workdir, reference = tmp_path / "runs", tmp_path / "reference"
    args = ["SampleFrames", "--SampleFrames-size", "64", "--dask-scheduler", "synchronous"]
    cmd = [str(BIN / "luigi"), "--module", "pipeline", *args, *dataset_args(eight_videos, workdir)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=luigi_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    store = None
    deadline = time.time() + 120
    while time.time() < deadline:
        paths = list(workdir.glob("frames-*.zarr"))
        if paths and len(ArtifactStore(paths[0]).done_videos()) >= 2:
            store = ArtifactStore(paths[0])
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store is not None, "the stage never got two videos done"
    assert not store.is_complete(), "the stage finished before it could be killed"
    finished = {v: (store.path / v / "zarr.json").stat().st_mtime_ns for v in store.done_videos()}
    assert 2 <= len(finished) < 8

    rerun = run_luigi([*args, *dataset_args(eight_videos, workdir)], tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert store.is_complete() and len(store.done_videos()) == 8
    for video, mtime in finished.items():  # finished videos were not recomputed
        assert (store.path / video / "zarr.json").stat().st_mtime_ns == mtime
    assert f"{len(finished)} already done, {8 - len(finished)} to compute" in rerun.stderr
    assert not store.tmp_root.exists()
    assert not list(workdir.glob(".*.tmp"))

    assert run_luigi([*args, *dataset_args(eight_videos, reference)], tmp_path).returncode == 0
    [ref] = reference.glob("frames-*.zarr")
    expected, got = _arrays(ref), _arrays(store.path)
    for video in expected:
        np.testing.assert_array_equal(expected[video], got[video])
