"""Real luigi runs of SampleFrames: failure report, resume per video, hash in path, --force, retcodes."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tal_pipeline.storage.zarr_store import ArtifactStore
from tests.conftest import BIN, dataset_args, luigi_env, run_luigi


@pytest.fixture
def dataset_copy(tmp_path, tiny_synthetic):
    folder = tmp_path / "data"
    shutil.copytree(tiny_synthetic, folder)
    return folder


def _stores(workdir: Path, stem="frames"):
    return sorted(workdir.glob(f"{stem}-*.zarr"))


def _mtimes(store: ArtifactStore):
    return {v: (store.path / v / "zarr.json").stat().st_mtime_ns for v in store.done_videos()}


def test_bad_video_fails_stage_keeps_others_and_resumes(tmp_path, dataset_copy):
    workdir = tmp_path / "runs"
    good = (dataset_copy / "synth_0001.mp4").read_bytes()
    (dataset_copy / "synth_0001.mp4").write_bytes(good[:200])  # truncated
    args = ["SampleFrames", *dataset_args(dataset_copy, workdir), "--SampleFrames-size", "32"]
    first = run_luigi(args, tmp_path)
    assert first.returncode == 30, first.stderr[-2000:]
    [path] = _stores(workdir)
    store = ArtifactStore(path)
    assert not store.is_complete()
    assert store.done_videos() == {"synth_0000", "synth_0002", "synth_0003"}
    report = json.loads(store.failure_report.read_text())
    assert list(report["failures"]) == ["synth_0001"] and "synth_0001" in report["failures"]["synth_0001"]
    assert "synth_0001" in first.stderr and "--skip-bad-videos" in first.stderr

    before = _mtimes(store)
    (dataset_copy / "synth_0001.mp4").write_bytes(good)
    # Repairing the file changes the dataset's identity (size, mtime): a new artifact, and the
    # incomplete store of the broken dataset is left untouched.
    second = run_luigi(args, tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    new = [p for p in _stores(workdir) if p != path]
    assert len(new) == 1 and ArtifactStore(new[0]).is_complete()
    assert _mtimes(store) == before  # the old, incomplete store was left as it was


def test_resume_computes_only_missing_videos(tmp_path, dataset_copy):
    workdir = tmp_path / "runs"
    args = ["SampleFrames", *dataset_args(dataset_copy, workdir), "--SampleFrames-size", "32"]
    assert run_luigi(args, tmp_path).returncode == 0
    [path] = _stores(workdir)
    store = ArtifactStore(path)
    before = _mtimes(store)
    # Simulate a run killed after two videos: flag gone, two arrays gone, a stale temporary left.
    (path / ".complete").unlink()
    for video in ("synth_0002", "synth_0003"):
        shutil.rmtree(path / video)
    (store.tmp_root / "synth_0002-0badc0de").mkdir(parents=True)
    rerun = run_luigi(args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = _mtimes(store)
    assert store.is_complete() and set(after) == set(before)
    assert after["synth_0000"] == before["synth_0000"] and after["synth_0001"] == before["synth_0001"]
    assert after["synth_0002"] != before["synth_0002"]
    assert not store.tmp_root.exists()
    assert "2 already done, 2 to compute" in rerun.stderr


def test_hash_in_path_force_and_skip(tmp_path, dataset_copy):
    workdir = tmp_path / "runs"
    base = ["SampleFrames", *dataset_args(dataset_copy, workdir)]
    assert run_luigi([*base, "--SampleFrames-size", "32"], tmp_path).returncode == 0
    assert run_luigi([*base, "--SampleFrames-size", "40"], tmp_path).returncode == 0
    stores = _stores(workdir)
    assert len(stores) == 2  # a changed parameter never reuses the old artifact
    shapes = {ArtifactStore(p).read("synth_0000").shape[1] for p in stores}
    assert shapes == {32, 40}
    # Nothing to do on a rerun; --force recomputes.
    store32 = next(ArtifactStore(p) for p in stores if ArtifactStore(p).read("synth_0000").shape[1] == 32)
    before = _mtimes(store32)
    again = run_luigi([*base, "--SampleFrames-size", "32"], tmp_path)
    assert again.returncode == 0 and _mtimes(store32) == before
    forced = run_luigi([*base, "--SampleFrames-size", "32", "--SampleFrames-force"], tmp_path)
    assert forced.returncode == 0 and store32.is_complete()
    assert all(_mtimes(store32)[v] != before[v] for v in before)
    # A bad video with --skip-bad-videos: complete, without it, and the report lists it.
    (dataset_copy / "synth_0003.mp4").write_bytes(b"")
    skipped = run_luigi([*base, "--SampleFrames-size", "32", "--SampleFrames-skip-bad-videos"], tmp_path)
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    newest = max(_stores(workdir), key=lambda p: p.stat().st_mtime_ns)
    store = ArtifactStore(newest)
    assert store.is_complete() and "synth_0003" in store.completion()["skipped"]
    assert "empty" in store.completion()["skipped"]["synth_0003"]


def test_retcode_from_another_directory(tmp_path):
    # `tal-pipeline run` reads the package's luigi.cfg ([retcode] included): a failing task exits non-zero.
    env = luigi_env()
    cmd = [str(BIN / "tal-pipeline"), "run", "SampleFrames", "--dataset-videos", str(tmp_path),
           "--dataset-annotations", str(tmp_path / "missing.json"), "--paths-workdir", str(tmp_path / "w")]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode in (30, 40), result.stdout[-1000:] + result.stderr[-2000:]
    assert "missing.json" in result.stderr
    # So does the plain luigi command, with the same shipped configuration.
    plain = run_luigi(["SampleFrames", "--dataset-videos", str(tmp_path), "--dataset-annotations",
                       str(tmp_path / "missing.json"), "--paths-workdir", str(tmp_path / "w")], tmp_path)
    assert plain.returncode != 0
