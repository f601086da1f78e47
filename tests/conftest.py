"""Shared fixtures: real data from ../shared (skipped with a reason when absent), a tiny synthetic
dataset generated once per session, and a helper that runs the real `luigi` command."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent


def pytest_configure(config):
    """Under pytest-xdist (pyproject's addopts), each worker process gets its own share of this process's cores
    (gw0 the first, gw1 the next, ...), inherited by the luigi subprocesses it starts: the pipeline sizes torch and
    Dask threads by the cores it may use (stages.parallel.usable_cores), so workers do not oversubscribe them."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if not worker or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= count:
        os.sched_setaffinity(0, cores[int(worker.removeprefix("gw")) % count::count])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real test data not found at {SHARED} (a user's clone has no ../shared; CI has it)")
    return SHARED


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """4 short synthetic videos (2 train, 2 test) at 64 px: decodable mp4 + annotations.json."""
    from tal_pipeline.synthetic.videos import generate

    out = tmp_path_factory.mktemp("tiny_synth")
    generate(out, videos=4, seed=3, duration=12.0, size=64, test_fraction=0.5)
    return out


@pytest.fixture
def torch_one_thread():
    """One torch thread inside the test (deterministic; several threads on 2 shared cores thrash), restored after."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def luigi_env() -> dict:
    """The environment of a luigi subprocess: the package's shipped luigi.cfg (no LUIGI_CONFIG_PATH: it runs in a
    folder without a luigi.cfg); the user's (or CI's) cache, so the I3D weights are fetched once, not per test."""
    env = dict(os.environ)
    env.pop("LUIGI_CONFIG_PATH", None)
    return env


def run_luigi(args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `luigi --module pipeline ...` command; returns the completed process."""
    cmd = [str(BIN / "luigi"), "--module", "pipeline", *args]
    return subprocess.run(cmd, cwd=cwd, env=env or luigi_env(), capture_output=True, text=True, timeout=timeout)


def dataset_args(folder: Path, workdir: Path) -> list[str]:
    return ["--dataset-videos", str(folder), "--dataset-annotations", str(folder / "annotations.json"),
            "--paths-workdir", str(workdir)]
