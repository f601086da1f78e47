"""Packaging: installed names (`pipeline`, `tal_pipeline`) that a user's own `models/`, `stages/` or `storage/`
cannot shadow; a `tal_pipeline/` folder of links that a plain checkout imports; and a wheel of real files that
works from any directory with the configuration it ships."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, dataset_args, luigi_env


def _frames_store(workdir: Path) -> Path:
    stores = sorted(workdir.glob("frames-*.zarr"))
    assert len(stores) == 1, stores
    return stores[0]


def _complete(store: Path) -> bool:
    from tal_pipeline.storage.zarr_store import ArtifactStore

    return ArtifactStore(store).is_complete()


def test_user_packages_named_like_ours_are_not_imported(tmp_path, tiny_synthetic):
    # A research folder with its own models/, stages/ and storage/ (YOLOv5- or DETR-style repos): `python -m`
    # puts the current directory first on sys.path, so any top-level `models` would resolve to the user's.
    for name in ("models", "stages", "storage"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")
    env = luigi_env()
    probe = subprocess.run([sys.executable, "-c", "import models"], cwd=tmp_path, env=env, capture_output=True,
                           text=True)
    assert "the user's own models was imported" in probe.stderr  # the trap is armed

    workdir = tmp_path / "w"
    args = [*dataset_args(tiny_synthetic, workdir), "--SampleFrames-size", "32"]
    luigi_run = subprocess.run([sys.executable, "-m", "luigi", "--module", "pipeline", "SampleFrames", *args],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert luigi_run.returncode == 0, luigi_run.stderr[-3000:]
    assert _complete(_frames_store(workdir))

    cli = subprocess.run([sys.executable, "-m", "pipeline.cli", "config", "--section", "SampleFrames", "--json"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr[-3000:]
    values = {r["key"]: r["value"] for r in json.loads(cli.stdout)["values"]}
    assert values["fps"] == "8.0"


def _tracked_copy(dest: Path) -> Path:
    """The files of the checkout, untracked ones included, without ignored ones
    (build outputs, virtual environments)."""
    try:
        files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell the tracked files from build outputs")
    for rel in files.splitlines():
        if (REPO / rel).is_symlink():  # tal_pipeline/'s links to the top-level folders, as git checks them out
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).symlink_to(os.readlink(REPO / rel))
        elif (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    return dest


def _bare_venv(venv: Path) -> tuple[Path, Path]:
    """A fresh virtual environment without this project: its dependencies (torch, luigi, ...) come from this
    environment through a .pth file, which does not process this environment's editable-install hook.
    Returns its python and its site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    outer = sysconfig.get_paths()
    (site / "_dependencies.pth").write_text(f"{outer['purelib']}\n{outer['platlib']}\n")
    return python, site


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of the checkout's tracked files, built offline."""
    pytest.importorskip("setuptools", minversion="77", reason="building the wheel offline needs setuptools >= 77 "
                                                              "(the [dev] extra)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = _tracked_copy(tmp / "src")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    return next((tmp / "dist").glob("tal_pipeline-*.whl"))


def _layout_folders() -> dict[str, Path]:
    """tal_pipeline/'s entries that are links -> the folders they point at."""
    return {p.name: p.resolve() for p in (REPO / "tal_pipeline").iterdir() if p.is_symlink()}


def test_tal_pipeline_links_to_the_top_level_folders():
    assert _layout_folders() == {name: REPO / name for name in ("models", "stages", "storage", "synthetic")}


def test_a_plain_checkout_imports_tal_pipeline(tmp_path):
    # No install: the checkout's files (its links included) and an environment that has only the dependencies.
    src = _tracked_copy(tmp_path / "src")
    python, _ = _bare_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    names = ["tal_pipeline.stages.data.timegrid", "tal_pipeline.models", "tal_pipeline.storage.atomic",
             "tal_pipeline.synthetic.thumos_like_layout"]
    code = f"import importlib; print('\\n'.join(importlib.import_module(n).__file__ for n in {names!r}))"
    run = subprocess.run([str(python), "-c", code], cwd=src, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    files = [Path(line).resolve() for line in run.stdout.split()]
    assert files == [src / "stages/data/timegrid.py", src / "models/__init__.py", src / "storage/atomic.py",
                     src / "synthetic/thumos_like_layout.py"]


def test_the_wheel_holds_real_files_of_every_module(wheel):
    with zipfile.ZipFile(wheel) as z:
        entries = {info.filename: info for info in z.infolist()}
        links = [n for n, info in entries.items() if stat.S_ISLNK(info.external_attr >> 16)]
        assert links == []
        for name, folder in _layout_folders().items():
            for file in folder.rglob("*.py"):
                entry = f"tal_pipeline/{name}/{file.relative_to(folder).as_posix()}"
                assert entry in entries, entry
                assert z.read(entry) == file.read_bytes(), entry


@pytest.mark.slow
def test_wheel_runs_from_any_directory_with_its_shipped_config(tmp_path, tiny_synthetic, wheel):
    # A fresh virtual environment with the wheel alone (and the dependencies).
    venv = tmp_path / "venv"
    python, site = _bare_venv(venv)
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                                "--no-index", "--quiet", str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = luigi_env()
    env.pop("PYTHONPATH", None)
    where = subprocess.run([str(python), "-c",
                            "import tal_pipeline.stages.bapg.tsc as t, tal_pipeline.models.fusion as f; "
                            "print(t.__file__); print(f.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert all(Path(p).is_relative_to(site) for p in where.stdout.split()), where.stdout  # not the checkout

    # The shipped luigi.cfg is read first; a luigi.cfg in the current directory overrides it.
    (elsewhere / "luigi.cfg").write_text("[SampleFrames]\nfps = 4.0\n")
    shown = subprocess.run([str(venv / "bin" / "tal-pipeline"), "config", "--json"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-3000:]
    config = json.loads(shown.stdout)
    assert Path(config["files"][0]) == site / "pipeline" / "luigi.cfg"
    rows = {(r["section"], r["key"]): r for r in config["values"]}
    assert rows[("SampleFrames", "fps")]["value"] == "4.0"
    assert rows[("SampleFrames", "fps")]["source"] == str((elsewhere / "luigi.cfg").resolve())
    assert rows[("TSCProposals", "penalty")]["source"] == str(site / "pipeline" / "luigi.cfg")
    assert rows[("retcode", "task_failed")]["value"] == "30"

    workdir = tmp_path / "w"
    run = subprocess.run([str(venv / "bin" / "tal-pipeline"), "run", "SampleFrames",
                          *dataset_args(tiny_synthetic, workdir), "--SampleFrames-size", "32"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    store = _frames_store(workdir)
    assert _complete(store)
    from tal_pipeline.storage.zarr_store import ArtifactStore

    assert ArtifactStore(store).attrs()["params"]["params"]["fps"] == 4.0  # ./luigi.cfg reached the task
