"""`tal-pipeline detect`: raw video -> detections with a TrainDetector checkpoint (stages/detectors/inference.py).

The key check: on a test video, the command's detections equal those of the pipeline's own Detect task with
the same checkpoint (same segments, labels and scores), i.e. single-video inference rebuilds the detector's
input (frames, I3D features, encoder, similarity, TSC, boundary-aware features) exactly as the chain did.
The chain runs for real (luigi subprocess) on the tiny synthetic dataset with small settings.
"""
from __future__ import annotations

import glob
import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.conftest import dataset_args, run_luigi

SMALL = ["--TrainDetector-epochs", "2", "--TrainEncoder-epochs", "2", "--TSCProposals-ms", "[2,4]",
         "--TSCProposals-rates", "[]", "--SampleFrames-size", "32"]
TEST_VIDEO = "synth_0002"  # test subset of generate(videos=4, seed=3, test_fraction=0.5)


def _one(pattern: str) -> Path:
    found = glob.glob(pattern)
    assert len(found) == 1, f"expected one {pattern}, found {found}"
    return Path(found[0])


def _ok(result, what: str) -> None:
    assert result.returncode == 0, f"{what} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def chain(tiny_synthetic, tmp_path_factory) -> dict:
    """The real chain up to Detect for actionformer + BAPG (which trains the detector on the way)."""
    work = tmp_path_factory.mktemp("detect_cli")
    workdir = work / "runs"
    result = run_luigi(["Detect", "--Detect-bapg", "--Detect-detector", "actionformer", *SMALL,
                        *dataset_args(tiny_synthetic, workdir)], work)
    _ok(result, "luigi Detect (+BAPG)")
    return {"data": tiny_synthetic, "work": work, "workdir": workdir,
            "detector": _one(str(workdir / "detector-*")),
            "detections": _one(str(workdir / "detections-*" / "detections.json"))}


def _durations(folder: Path) -> dict[str, float]:
    db = json.loads((folder / "annotations.json").read_text())["database"]
    return {v: float(x["duration"]) for v, x in db.items()}


def _check_results(dets: list[dict], labels: list[str], duration: float) -> None:
    assert dets, "no detections"
    scores = [d["score"] for d in dets]
    assert scores == sorted(scores, reverse=True)
    for d in dets:
        s, e = d["segment"]
        assert 0.0 <= s < e <= duration + 1e-9, d
        assert d["label"] in labels, d
        assert 0.0 <= d["score"] <= 1.0, d


def test_detect_matches_pipeline_detect_with_bapg(chain, tmp_path, capsys):
    import torch

    video = chain["data"] / f"{TEST_VIDEO}.mp4"
    out = tmp_path / "results.json"
    # the checkpoint file itself (the folder is accepted too: see the folder test)
    assert main(["detect", str(video), "--checkpoint", str(chain["detector"] / "checkpoint.pt"),
                 "--out", str(out), "--max-dets", "200", "--device", "cpu"]) == 0
    assert "1 video(s), 0 failed" in capsys.readouterr().err

    payload = json.loads(out.read_text())
    assert payload["version"] and payload["failures"] == {}
    assert list(payload["results"]) == [TEST_VIDEO]
    ckpt = torch.load(chain["detector"] / "checkpoint.pt", map_location="cpu", weights_only=True)
    labels = ckpt["config"]["labels"]
    ext = payload["external_data"]
    assert ext["detector"] == "actionformer" and ext["bapg"] is True and ext["labels"] == labels
    info = ext["videos"][TEST_VIDEO]
    assert info["input_channels"] == ckpt["config"]["in_channels"]
    assert sorted(info["change_points"]) == ["m=2", "m=4"]
    duration = _durations(chain["data"])[TEST_VIDEO]
    assert info["duration"] == pytest.approx(duration, abs=1e-6)  # decoded duration = the generator's
    mine = payload["results"][TEST_VIDEO]
    _check_results(mine, labels, duration)

    # the key check: the pipeline's own Detect task gives the same detections for this video
    ref = json.loads(chain["detections"].read_text())["results"][TEST_VIDEO]
    assert len(mine) == len(ref)
    for i, (a, b) in enumerate(zip(mine, ref)):
        assert a["label"] == b["label"], (i, a, b)
        assert a["segment"] == pytest.approx(b["segment"], abs=1e-4), (i, a, b)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4), (i, a, b)


ALL_GROUPS = ["pooled", "boundary", "novelty", "strength"]


@pytest.fixture(scope="module")
def chain_all_groups(chain) -> dict:
    """The same chain for actionformer + BAPG with every channel group of B (novelty and strength read S)."""
    import torch

    result = run_luigi(["Detect", "--Detect-bapg", "--Detect-detector", "actionformer", "--Detect-bapg-groups",
                        json.dumps(ALL_GROUPS), *SMALL, *dataset_args(chain["data"], chain["workdir"])], chain["work"])
    _ok(result, "luigi Detect (+BAPG, all groups)")
    found = {}
    for folder in glob.glob(str(chain["workdir"] / "detector-*")):
        cfg = torch.load(Path(folder) / "checkpoint.pt", map_location="cpu", weights_only=True)["config"]
        found[tuple(cfg.get("bapg_groups") or ())] = Path(folder)
    [detections] = [p for p in glob.glob(str(chain["workdir"] / "detections-*" / "detections.json"))
                    if json.loads(Path(p).read_text())["external_data"]["bapg_groups"] == ALL_GROUPS]
    assert found[("pooled", "boundary")] == chain["detector"]  # the module's first chain: the default groups
    return {**chain, "detector": found[tuple(ALL_GROUPS)], "detections": Path(detections),
            "default_detector": chain["detector"]}


def test_detect_matches_pipeline_with_every_channel_group(chain_all_groups, tmp_path, capsys):
    import numpy as np
    import torch

    from tal_pipeline.stages.detectors.checkpoint import load_checkpoint
    from tal_pipeline.stages.detectors.inference import detector_input
    from tal_pipeline.storage.features import load_feature_dict, read_features

    c = chain_all_groups
    ckpt = load_checkpoint(c["detector"])
    recipe = ckpt["recipe"].bapg
    assert recipe.groups == tuple(ALL_GROUPS) and ckpt["config"]["bapg_groups"] == ALL_GROUPS
    default = torch.load(c["default_detector"] / "checkpoint.pt", map_location="cpu", weights_only=True)
    scales = 2  # m = 2, 4
    assert ckpt["config"]["in_channels"] == default["config"]["in_channels"] + 3 + scales  # novelty + strength
    # B itself: the stage function on the pipeline's own features gives exactly the pipeline's stored input
    features_store = _one(str(c["workdir"] / "features-*.zarr"))
    [bapg_store] = [p for p in glob.glob(str(c["workdir"] / "bapg_features-*.zarr"))
                    if read_features(p, TEST_VIDEO)[0].shape[1] == ckpt["config"]["in_channels"] - 1024]
    features, _ = read_features(features_store, TEST_VIDEO)
    mine, _ = detector_input(features, ckpt, TEST_VIDEO)
    theirs, _ = load_feature_dict(features_store, [TEST_VIDEO], bapg_store)
    # Equal up to float32 rounding: in a full parallel test run the stored B and this one differ by up to ~2e-6
    # (summation order in another process); a recipe mismatch would differ by orders of magnitude more.
    np.testing.assert_allclose(mine, theirs[TEST_VIDEO], rtol=0, atol=1e-5)

    out = tmp_path / "results.json"
    assert main(["detect", str(c["data"] / f"{TEST_VIDEO}.mp4"), "--checkpoint", str(c["detector"]),
                 "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    got = json.loads(out.read_text())["results"][TEST_VIDEO]
    ref = json.loads(c["detections"].read_text())["results"][TEST_VIDEO]
    assert got and len(got) == len(ref)
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a["label"] == b["label"], (i, a, b)
        assert a["segment"] == pytest.approx(b["segment"], abs=1e-4), (i, a, b)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4), (i, a, b)


def test_detect_matches_pipeline_for_a_class_agnostic_fixed_length_checkpoint(chain, tmp_path, capsys):
    """The anet preset's detector (class-agnostic, inputs resized to 192 steps) through `tal-pipeline detect` with
    the preset's post-processing: the same detections as the pipeline's Detect (on the same features)."""
    # the synthetic videos' subsets are train / test, not ActivityNet's (the preset's): given
    result = run_luigi(["Detect", "--Detect-detector", "actionformer", "--dataset-preset", "anet", *SMALL,
                        "--dataset-train-subset", "train", "--dataset-test-subset", "test",
                        *dataset_args(chain["data"], chain["workdir"])], chain["work"])
    _ok(result, "luigi Detect (anet preset)")
    [detector] = [Path(d) for d in glob.glob(str(chain["workdir"] / "detector-*"))
                  if json.loads((Path(d) / "config.json").read_text()).get("class_agnostic")]
    [detections] = [p for p in glob.glob(str(chain["workdir"] / "detections-*" / "detections.json"))
                    if json.loads(Path(p).read_text()).get("postprocessing", {}).get("nms_sigma") == 0.75]
    out = tmp_path / "results.json"
    assert main(["detect", str(chain["data"] / f"{TEST_VIDEO}.mp4"), "--checkpoint", str(detector), "--out",
                 str(out), "--max-dets", "100", "--nms-sigma", "0.75", "--voting-thresh", "0.9", "--device",
                 "cpu"]) == 0
    payload = json.loads(out.read_text())
    assert payload["external_data"]["labels"] == ["action"]
    assert payload["external_data"]["inputs"]["detector_input"] == {"length": 192, "class_agnostic": True}
    mine, ref = payload["results"][TEST_VIDEO], json.loads(Path(detections).read_text())["results"][TEST_VIDEO]
    _check_results(mine, ["action"], _durations(chain["data"])[TEST_VIDEO])
    assert len(mine) == len(ref) <= 100
    for i, (a, b) in enumerate(zip(mine, ref)):
        assert a["label"] == b["label"], (i, a, b)
        assert a["segment"] == pytest.approx(b["segment"], abs=1e-4), (i, a, b)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4), (i, a, b)


def test_detect_folder_without_bapg_reports_bad_video_and_plots(chain, tmp_path, capsys):
    result = run_luigi(["TrainDetector", "--TrainDetector-detector", "actionformer", *SMALL,
                        *dataset_args(chain["data"], chain["workdir"])], chain["work"])
    _ok(result, "luigi TrainDetector (baseline)")
    # The module's other tests share this workdir: the anet-preset test trains a class-agnostic baseline there too.
    configs = {d: json.loads((Path(d) / "config.json").read_text())
               for d in glob.glob(str(chain["workdir"] / "detector-*"))}
    baseline = [d for d, c in configs.items() if c["bapg"] is False and not c.get("class_agnostic")]
    assert len(baseline) == 1, baseline

    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(chain["data"] / "synth_0003.mp4", folder / "synth_0003.mp4")
    (folder / "bad.mp4").write_text("this is not a video\n")
    (folder / "notes.txt").write_text("not a video extension: ignored\n")
    out = tmp_path / "out" / "res.json"
    code = main(["detect", str(folder), "--checkpoint", baseline[0], "--out", str(out), "--plot", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0  # documented: 0 when results were written; failures are listed, not fatal
    assert "bad.mp4" in err

    payload = json.loads(out.read_text())
    assert list(payload["results"]) == ["synth_0003"]
    assert list(payload["failures"]) == ["bad"] and "bad.mp4" in payload["failures"]["bad"]
    assert payload["external_data"]["bapg"] is False
    _check_results(payload["results"]["synth_0003"], payload["external_data"]["labels"],
                   _durations(chain["data"])["synth_0003"])
    png = tmp_path / "out" / "res_synth_0003.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "out" / "res_bad.png").exists()


def _fake_checkpoint(path: Path, **inputs) -> Path:
    import torch

    from tal_pipeline.models.detector_registry import resolve_model_config

    config = {"name": "actionformer", "labels": ["a", "b"], "bapg": False, "in_channels": 1024, "bapg_channels": 0,
              "num_classes": 2, "model": resolve_model_config("actionformer"), "fusion": None, "train": {},
              "max_seq_len": 256, "input_length": None, "class_agnostic": False,
              "inputs": {"detector_input": {"length": None, "class_agnostic": False}, **inputs}}
    torch.save({"state": {}, "config": config}, path)
    return path


def test_detect_refuses_bad_invocations(tmp_path, capsys, tiny_synthetic):
    import torch

    video = str(tiny_synthetic / "synth_0003.mp4")
    imported = _fake_checkpoint(tmp_path / "imported.pt", features={"task": "ImportFeatures", "window": 16, "stride": 4,
                                                                    "weights": None})
    assert main(["detect", video, "--checkpoint", str(imported)]) == 2
    err = capsys.readouterr().err
    assert "imported.pt" in err and "imported features" in err and "raw video" in err

    torch.save({"state": {}}, tmp_path / "nokeys.pt")
    assert main(["detect", video, "--checkpoint", str(tmp_path / "nokeys.pt")]) == 2
    err = capsys.readouterr().err
    assert "nokeys.pt" in err and "config" in err

    (tmp_path / "text.pt").write_text("{}")
    assert main(["detect", video, "--checkpoint", str(tmp_path / "text.pt")]) == 2
    assert "text.pt" in capsys.readouterr().err

    assert main(["detect", video, "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err

    good = _fake_checkpoint(tmp_path / "ok.pt", features={"task": "ExtractFeatures", "window": 16, "stride": 4,
                                                          "weights": "i3d-rgb-k400"}, frames={"fps": 8.0, "size": 32})
    assert main(["detect", str(tmp_path / "nothere.mp4"), "--checkpoint", str(good)]) == 2
    assert "nothere.mp4" in capsys.readouterr().err
    (tmp_path / "bad.mp4").write_text("not a video")
    assert main(["detect", str(tmp_path / "bad.mp4"), "--checkpoint", str(good)]) == 2  # a single bad video
    assert "bad.mp4" in capsys.readouterr().err
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert main(["detect", str(empty), "--checkpoint", str(good)]) == 2
    assert "no video file" in capsys.readouterr().err
