"""Artifacts that detect their own damage: crc32c chunk checksums in every Zarr array, SHA256SUMS in every folder
artifact, reads that fail naming the store, video and chunk (or the file), and `tal-pipeline verify [--repair]`.

The end-to-end test damages a real (tiny) run: one features chunk, one similarity chunk and the detector's
checkpoint, then checks that the stages reading them fail naming them, that the installed `verify` lists exactly
those three, and that after `verify --repair` the same command recomputes only them, to the same values.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import zarr

from tal_pipeline.storage.integrity import ArtifactDamaged
from tal_pipeline.storage.manifest import verified_file, write_manifest
from tal_pipeline.storage.verify import repair, verify
from tal_pipeline.storage.zarr_store import ArtifactStore, compressor
from tests.conftest import BIN


def flip(path, offset: int = 0) -> None:
    """Flip three bytes of a file in place (from the middle on when offset is 0)."""
    data = bytearray(path.read_bytes())
    at = offset or len(data) // 2
    for i in range(at, at + 3):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def small_store(path, videos=("a", "b")) -> ArtifactStore:
    store = ArtifactStore(path)
    store.begin({"params": {"x": 1}})
    for i, video in enumerate(videos):
        store.write_video(video, np.arange(40 * 3, dtype=np.float32).reshape(40, 3) + i, 16, ["time", "feature"])
    store.mark_complete(list(videos))
    return store


# ----------------------------------------------------------------------------- the store and the manifest

def test_damaged_chunk_fails_the_read_naming_store_video_and_chunk(tmp_path):
    store = small_store(tmp_path / "features-x.zarr")
    meta = json.loads((store.path / "a" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]][-1] == "crc32c"  # after the compressor: it checks the stored bytes
    flip(store.path / "a" / "c" / "1" / "0", offset=8)
    np.testing.assert_array_equal(store.read("a")[:16], np.arange(48, dtype=np.float32).reshape(16, 3))  # chunk 0
    for read in (lambda: store.read("a")[...], lambda: np.asarray(store.read("a")),
                 lambda: store.read("a").oindex[[0, 20]]):
        with pytest.raises(ArtifactDamaged) as err:
            read()
        assert str(store.path) in str(err.value) and "video 'a'" in str(err.value)
        assert "chunk c/1/0: checksum mismatch" in str(err.value)
    np.testing.assert_array_equal(store.read("b")[...][:, 0], np.arange(0, 120, 3) + 1)  # the other video reads


def test_missing_chunk_is_damage_not_fill_values(tmp_path):
    store = small_store(tmp_path / "features-x.zarr")
    zeros = ArtifactStore(tmp_path / "zeros.zarr")
    zeros.begin({})
    zeros.write_video("z", np.zeros((40, 3), np.float32), 16, ["time", "feature"])
    assert (zeros.path / "z" / "c" / "2" / "0").is_file()  # all-zero chunks are stored too
    (store.path / "b" / "c" / "2" / "0").unlink()
    with pytest.raises(ArtifactDamaged, match=r"video 'b': chunk c/2/0: missing chunk file"):
        store.read("b")


def test_verify_and_repair_a_store_and_old_arrays_without_checksums(tmp_path):
    store = small_store(tmp_path / "features-x.zarr", videos=("a", "b", "c"))
    # An array as written before the codec (Blosc only) reads as before and is listed as unverified.
    old = zarr.create_array(store=str(store.path / "old"), shape=(8, 3), chunks=(4, 3), dtype="float32",
                            compressors=compressor(), zarr_format=3)
    old[...] = 1.0
    assert store.read("old")[...].sum() == 24.0
    flip(store.path / "b" / "c" / "0" / "0", offset=8)
    report = verify(tmp_path)
    assert report["checked"] == [str(store.path)]
    assert [(d["video"], d["chunk"], d["reason"]) for d in report["damaged"]] == [("b", "c/0/0", "checksum mismatch")]
    assert [(u["video"], u["reason"]) for u in report["unverified"]] == [("old", "no checksums")]
    assert repair(report["damaged"]) == [f"{store.path}: removed the completeness flag and video(s) b"]
    assert not store.is_complete() and store.videos() == ["a", "c", "old"]
    assert verify(store.path)["damaged"] == []


def test_verify_finds_a_vanished_video_and_a_changed_store_file(tmp_path):
    store = ArtifactStore(tmp_path / "proposals-x.zarr")
    store.begin({})
    for video in ("a", "b"):
        store.write_video(video, np.ones((8, 2), np.float32), 4, ["time", "feature"])
    (store.path / "recall.json").write_text('[{"m": 2, "recall": 0.5}]')  # written before the flag, as TSCProposals
    store.mark_complete(["a", "b"])
    assert verify(store.path)["damaged"] == []
    shutil.rmtree(store.path / "a")
    (store.path / "recall.json").write_text('[{"m": 2, "recall": 0.9}]')
    found = {(d["video"], d["file"], d["reason"]) for d in verify(store.path)["damaged"]}
    assert found == {("a", None, "listed as done in .complete, but its array is gone"),
                     (None, "recall.json", "sha256 mismatch")}
    repair(verify(store.path)["damaged"])
    assert store.exists() and not store.is_complete() and store.videos() == ["b"]  # the stage reruns its last step


def test_manifest_names_the_changed_file(tmp_path):
    folder = tmp_path / "detector-x"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(bytes(range(256)) * 8)
    (folder / "config.json").write_text('{"a": 1}')
    write_manifest(folder)
    (folder / "DONE").write_text("now\n")
    assert verified_file(folder / "checkpoint.pt") == folder / "checkpoint.pt"
    assert verify(folder) == {"checked": [str(folder)], "damaged": [], "unverified": []}
    flip(folder / "checkpoint.pt")
    with pytest.raises(ArtifactDamaged, match=r"detector-x: checkpoint.pt: sha256 mismatch"):
        verified_file(folder / "checkpoint.pt")
    verified_file(folder / "config.json")
    [item] = verify(folder)["damaged"]
    assert (item["file"], item["reason"]) == ("checkpoint.pt", "sha256 mismatch")
    repair([item])
    assert sorted(p.name for p in folder.iterdir()) == ["REPAIRED"]  # kept, without DONE: a rerun recomputes it
    assert "checkpoint.pt: sha256 mismatch" in (folder / "REPAIRED").read_text()


# ----------------------------------------------------------------------------- a real run, damaged and repaired

CHAIN = ["Detect", "--Detect-detector", "actionformer", "--Detect-bapg", "--Detect-bapg-source", "raw",
         "--TrainDetector-epochs", "1", "--TSCProposals-ms", "[2,4]", "--TSCProposals-rates", "[]",
         "--synthetic-videos", "3", "--synthetic-seed", "3", "--synthetic-duration", "10", "--synthetic-size", "32",
         "--SampleFrames-size", "32"]


def tal(*args, cwd, timeout=300) -> subprocess.CompletedProcess:
    """The installed `tal-pipeline` command."""
    return subprocess.run([str(BIN / "tal-pipeline"), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def snapshot(workdir):
    """Every video array of every store, and the detector's weights."""
    import torch

    stores = [ArtifactStore(p) for p in workdir.glob("*.zarr")]
    arrays = {(s.path.name, v): s.read(v)[...] for s in stores for v in s.videos()}
    [detector] = workdir.glob("detector-*")
    return arrays, torch.load(detector / "checkpoint.pt", weights_only=True)["state"]


def test_damaged_run_fails_names_verifies_and_repairs(tmp_path):
    import torch

    from tal_pipeline.stages.bapg.proposals import tsc_proposals_to_store
    from tal_pipeline.stages.bapg.scales import Scales
    from tal_pipeline.stages.bapg.similarity import similarity_matrix_to_store
    from tal_pipeline.stages.detectors.checkpoint import load_checkpoint

    workdir = tmp_path / "runs"
    first = tal("run", *CHAIN, "--paths-workdir", workdir, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    arrays, weights = snapshot(workdir)
    [features] = workdir.glob("features-*.zarr")
    [similarity] = workdir.glob("similarity-*.zarr")
    [detector] = workdir.glob("detector-*")
    untouched = {p: p.stat().st_mtime_ns for p in [*workdir.glob("*/DONE"), *workdir.glob("*.zarr/*/zarr.json")]
                 if p.parent not in (detector, features / "synth_0000", similarity / "synth_0001")}

    flip(features / "synth_0000" / "c" / "0" / "0")
    flip(similarity / "synth_0001" / "c" / "0" / "0")
    flip(detector / "checkpoint.pt")

    # (a) the stages that read them fail, naming the store, the video and the chunk (or the file)
    with pytest.raises(ArtifactDamaged, match=rf"store {features}, video 'synth_0000': chunk c/0/0: checksum"):
        similarity_matrix_to_store("synth_0000", features_store=str(features), store_path=str(tmp_path / "s.zarr"),
                                   encoder=None)
    with pytest.raises(ArtifactDamaged, match=rf"store {similarity}, video 'synth_0001': chunk c/0/0: checksum"):
        tsc_proposals_to_store("synth_0001", store_path=str(tmp_path / "p.zarr"), scales=Scales((2,), (), 0.0, 1),
                               source="raw", similarity_store=str(similarity))
    with pytest.raises(ArtifactDamaged, match=rf"artifact {detector}: checkpoint.pt: sha256 mismatch"):
        load_checkpoint(detector)

    # (b) the installed `verify` lists exactly these three
    listed = tal("verify", workdir, "--json", cwd=tmp_path)
    assert listed.returncode == 1, listed.stderr
    report = json.loads(listed.stdout)
    assert sorted((d["artifact"], d["video"], d["chunk"], d["file"]) for d in report["damaged"]) == sorted([
        (str(features), "synth_0000", "c/0/0", None), (str(similarity), "synth_0001", "c/0/0", None),
        (str(detector), None, None, "checkpoint.pt")])
    assert report["unverified"] == [] and len(report["checked"]) == 8
    human = tal("verify", workdir, cwd=tmp_path)
    assert human.returncode == 1 and f"DAMAGED  {detector.name} file checkpoint.pt: sha256 mismatch" in human.stdout

    # (c) --repair, then the same command recomputes only those, to the undamaged values
    repaired = tal("verify", workdir, "--repair", cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert not (detector / "checkpoint.pt").exists() and not ArtifactStore(features).is_complete()
    rerun = tal("run", *CHAIN, "--paths-workdir", workdir, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "features: 3 videos, 2 already done, 1 to compute" in rerun.stderr
    assert "similarity: 3 videos, 2 already done, 1 to compute" in rerun.stderr
    # The downstream tasks run only to reach the repaired ones, and keep their artifacts (unchanged mtimes below).
    kept = re.findall(r"\[pipeline\] (\w+): \S+ is intact, kept", rerun.stderr)
    assert sorted(kept) == ["bapg_features", "detections", "proposals"], rerun.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched
    again, new_weights = snapshot(workdir)
    assert again.keys() == arrays.keys()
    for key in arrays:
        np.testing.assert_array_equal(again[key], arrays[key], err_msg=str(key))
    assert new_weights.keys() == weights.keys() and all(torch.equal(new_weights[k], weights[k]) for k in weights)
    final = tal("verify", workdir, cwd=tmp_path)
    assert final.returncode == 0 and "0 damaged, 0 without checksums" in final.stdout


def test_a_taken_apart_upstream_makes_downstream_undone_an_absent_one_does_not(tmp_path):
    import luigi

    from pipeline.base import DoneFileTarget, ZarrStoreTarget, upstream_intact

    class _IntegrityFeatures(luigi.Task):
        root = luigi.Parameter()

        def output(self):
            return ZarrStoreTarget(f"{self.root}/features-x.zarr")

    class _IntegrityDetector(luigi.Task):
        root = luigi.Parameter()

        def requires(self):
            return _IntegrityFeatures(root=self.root)

        def output(self):
            return DoneFileTarget(f"{self.root}/detector-x")

    class _IntegrityDetect(luigi.Task):
        root = luigi.Parameter()

        def requires(self):
            return _IntegrityDetector(root=self.root)

    def workdir(name):
        root = tmp_path / name
        small_store(root / "features-x.zarr")
        (root / "detector-x").mkdir()
        (root / "detector-x" / "checkpoint.pt").write_bytes(b"weights")
        write_manifest(root / "detector-x")
        (root / "detector-x" / "DONE").write_text("now\n")
        return root

    assert upstream_intact(_IntegrityDetect(root=str(workdir("intact"))))
    repaired = workdir("store-repaired")
    ArtifactStore(repaired / "features-x.zarr").invalidate(["a"])
    assert not upstream_intact(_IntegrityDetect(root=str(repaired)))  # two levels up: the rerun must reach it
    folder = workdir("folder-repaired")
    flip(folder / "detector-x" / "checkpoint.pt", offset=1)
    repair(verify(folder / "detector-x")["damaged"])
    assert not upstream_intact(_IntegrityDetect(root=str(folder)))
    absent = workdir("deleted")
    ArtifactStore(absent / "features-x.zarr").remove()  # deleted to save space: not recomputed for a done task
    assert upstream_intact(_IntegrityDetect(root=str(absent)))
