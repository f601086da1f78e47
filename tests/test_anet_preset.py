"""The ActivityNet recipe's detector side (stages/presets.py): fixed-length inputs on resampled time grids, segment
voting after Soft-NMS, class-agnostic training recorded in the checkpoint's recipe, and the preset's values as the
tasks resolve them (thumos14: the values of before presets existed)."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch
from luigi.cmdline_parser import CmdlineParser

from tal_pipeline.models.nms import select_detections
from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.stages.detectors.checkpoint import load_checkpoint_file
from tal_pipeline.stages.detectors.data import build_training_set
from tal_pipeline.stages.detectors.detection import detect
from tal_pipeline.stages.detectors.recipe import DetectorInputRecipe, FeaturesRecipe, InferenceRecipe
from tal_pipeline.stages.detectors.resize import resize_features, resize_videos
from tal_pipeline.stages.detectors.training import FOREGROUND, train_detector
from tal_pipeline.stages.presets import ANET_TIOUS
from tests.synthetic_features import synthetic_feature_dataset

NATIVE_INPUT = DetectorInputRecipe(length=None, class_agnostic=False)  # the native grid, multi-class


@pytest.mark.parametrize("length", [192, 40, 137, 1])
def test_resize_is_torch_linear_interpolation(length):
    x = np.random.default_rng(0).normal(size=(137, 6))
    ref = torch.nn.functional.interpolate(torch.from_numpy(x.T[None]), size=length, mode="linear",
                                          align_corners=False)[0].T.numpy()
    np.testing.assert_allclose(resize_features(x, length), ref, atol=1e-6)


def test_resampled_grid_maps_seconds_to_resized_steps_and_back_exactly():
    native = TimeGrid(25.0, 16, 4)
    grid = native.resampled(384, 192)  # 2 native steps per resized step: every value below is a binary fraction
    seconds = np.array([3.0, 10.5, 12.25, 30.0])
    np.testing.assert_array_equal(grid.to_seconds(grid.to_steps(seconds)), seconds)
    # resized step j sits at native index (j + 0.5) * 2 - 0.5: step 0 at native 0.5, centre (0.5*4 + 8) / 25 s
    assert grid.to_seconds(0) == (0.5 * 4 + 8) / 25 and grid.step_seconds == 2 * native.step_seconds
    odd = TimeGrid(29.97, 16, 4).resampled(1001, 192)  # not a binary fraction: exact to rounding
    np.testing.assert_allclose(odd.to_seconds(odd.to_steps(seconds)), seconds, rtol=0, atol=1e-12)
    assert TimeGrid.from_attrs(odd.to_attrs()) == odd and odd.native() == TimeGrid(29.97, 16, 4)
    assert "steps" not in native.to_attrs()  # a native grid is stored as it always was
    with pytest.raises(ValueError, match="already resampled"):
        grid.resampled(192, 100)


def test_resized_features_sit_where_the_grid_says():
    """A ramp feature (value = native step index) resized: each resized step's value is the native index the grid
    places it at, so a segment in seconds -> resized steps (the training targets) -> seconds comes back exactly."""
    native = TimeGrid(10.0, 4, 2)
    T, L = 300, 192
    feats = {"v": np.arange(T, dtype=np.float64)[:, None].repeat(2, 1)}
    resized, grids = resize_videos(feats, native, L)
    grid = grids["v"]
    assert grid == native.resampled(T, L) and resized["v"].shape == (L, 2)
    j = np.arange(3, L - 3)  # away from the clamped ends
    np.testing.assert_allclose(resized["v"][j, 0], native.to_steps(grid.to_seconds(j)), atol=1e-4)
    import pandas as pd

    ann = pd.DataFrame([{"video": "v", "label": "a", "start": 12.3, "end": 20.8}])
    [item] = build_training_set(resized, ann, ["a"], grids)
    np.testing.assert_allclose(grid.to_seconds(item.segments.astype(np.float64)), [[12.3, 20.8]], atol=1e-5)
    np.testing.assert_allclose(grid.to_seconds(grid.to_steps(np.array([12.3, 20.8]))), [12.3, 20.8], atol=1e-12)


def test_bapg_channels_are_resized_on_the_same_grid():
    rng = np.random.default_rng(1)
    f, b = rng.normal(size=(77, 5)), np.zeros((77, 2))
    b[30, 0] = 1.0  # a change point at native step 30
    both = resize_features(np.concatenate([f, b], 1), 48)
    np.testing.assert_array_equal(both, np.concatenate([resize_features(f, 48), resize_features(b, 48)], 1))
    grid = TimeGrid(10.0, 4, 2).resampled(77, 48)
    peak = int(np.argmax(both[:, 5]))
    assert abs(grid.to_seconds(peak) - TimeGrid(10.0, 4, 2).to_seconds(30)) <= grid.step_seconds / 2


def test_segment_voting_averages_overlapping_candidates():
    # three candidates of one class: 0 and 1 overlap at tIoU 0.9; 2 is far away
    segs = torch.tensor([[0.0, 10.0], [0.0, 9.0], [50.0, 60.0]])
    scores = torch.tensor([[0.9], [0.6], [0.5]])
    valid = torch.ones(3, dtype=torch.bool)
    plain = select_detections(segs, scores, valid, 1e-3, 100, 0.75, 100)
    voted = select_detections(segs, scores, valid, 1e-3, 100, 0.75, 100, voting_thresh=0.9)
    torch.testing.assert_close(voted[1], plain[1])  # scores as Soft-NMS left them
    # the best (0..10) becomes (0.9*1*[0,10] + 0.6*0.9*[0,9]) / (0.9 + 0.54)
    expect = (0.9 * np.array([0, 10]) + 0.54 * np.array([0, 9])) / 1.44
    np.testing.assert_allclose(voted[0][0].numpy(), expect, rtol=1e-6)
    far = [i for i, s in enumerate(plain[0].tolist()) if s[0] == 50.0]
    assert voted[0][far[0]].tolist() == [50.0, 60.0]  # no neighbour: unchanged
    strict = select_detections(segs, scores, valid, 1e-3, 100, 0.75, 100, voting_thresh=0.95)
    assert strict[0][0].tolist() == [0.0, 10.0]  # 0.9 < 0.95: only itself


def test_class_agnostic_fixed_length_training_and_checkpoint_round_trip(tmp_path, torch_one_thread):
    feats, ann, labels, grid, durations = synthetic_feature_dataset(num_videos=6, channels=16, num_classes=3,
                                                                    min_len=60, max_len=120)
    settings = {"epochs": 2, "input_length": 64, "max_seq_len": 64, "class_agnostic": True}
    state, cfg, _ = train_detector("actionformer", feats, ann, labels, grid, settings, progress=False)
    assert cfg["num_classes"] == 1 and cfg["labels"] == [FOREGROUND] and cfg["class_agnostic"] is True
    assert cfg["input_length"] == 64 and cfg["time_grid"] == grid.to_attrs()
    assert [v.shape[0] for k, v in state.items() if k.endswith("cls_head.out.weight")] == [1]
    recipe = InferenceRecipe(FeaturesRecipe("ImportFeatures", 4, 2, None), None, None, DetectorInputRecipe(64, True))
    file = tmp_path / "checkpoint.pt"
    torch.save({"state": state, "config": {**cfg, "bapg": False, "inputs": recipe.to_dict()}}, file)
    ckpt = load_checkpoint_file(file)
    assert ckpt["recipe"].detector_input == DetectorInputRecipe(64, True)
    direct = detect("actionformer", state, cfg, feats, [FOREGROUND], grid, durations, max_dets=100, nms_sigma=0.75,
                    voting_thresh=0.9)
    loaded = detect("actionformer", ckpt["state"], ckpt["config"], feats, ckpt["config"]["labels"], grid, durations,
                    max_dets=100, nms_sigma=0.75, voting_thresh=0.9)
    assert loaded == direct and all(0 < len(d) <= 100 for d in direct.values())
    assert {d["label"] for dets in direct.values() for d in dets} == {FOREGROUND}
    for video, dets in direct.items():
        assert all(0.0 <= d["segment"][0] < d["segment"][1] <= durations[video] for d in dets)
    # a recipe that disagrees with the training, or from before detector_input, is caught
    wrong = InferenceRecipe(FeaturesRecipe("ImportFeatures", 4, 2, None))
    torch.save({"state": state, "config": {**cfg, "bapg": False, "inputs": wrong.to_dict()}}, file)
    with pytest.raises(ValueError, match="not what the detector was trained on"):
        load_checkpoint_file(file)
    old = {k: v for k, v in wrong.to_dict().items() if k != "detector_input"}
    with pytest.raises(ValueError, match=r"\['detector_input'\]: expected a mapping"):
        InferenceRecipe.from_dict(old, False)


def _resolve(args):
    from pipeline.bapg_tasks import TSCProposals
    from pipeline.config import detector_settings
    from pipeline.detector_tasks import Detect, TrainDetector
    from pipeline.report_tasks import Evaluate

    with CmdlineParser.global_instance(["Evaluate", "--no-lock", *args]):
        ev, det = Evaluate(), Detect()
        return {"train": detector_settings("actionformer")["train"], "tious": list(ev.spec().tiou_thresholds),
                "cap": ev.spec().max_dets, "post": asdict(det.spec()), "tadtr": asdict(Detect(detector="tadtr").spec()),
                "requires": type(ev.requires()).__name__, "agnostic": ev.class_agnostic(),
                "recipe": TrainDetector().inference_recipe().detector_input,
                "paths": (ev.output().path, det.output().path),
                "rates": TSCProposals().spec().scales.rates, "tsc": TSCProposals().output().path,
                "recipe_rates": TrainDetector(bapg=True).inference_recipe().bapg.rates}


def test_presets_as_the_tasks_resolve_them(tmp_path):
    work = ["--paths-workdir", str(tmp_path)]
    thumos = _resolve(work)
    assert thumos["train"] == {} and thumos["tious"] == [0.3, 0.4, 0.5, 0.6, 0.7] and thumos["cap"] == 200
    assert thumos["post"] == {"max_dets": 200, "nms_sigma": None, "voting_thresh": 0.0}
    assert thumos["requires"] == "Detect" and not thumos["agnostic"] and thumos["recipe"] == NATIVE_INPUT
    # the defaults are the values of before: given explicitly, they give the same paths
    explicit = _resolve([*work, "--Evaluate-tiou-thresholds", "[0.3, 0.4, 0.5, 0.6, 0.7]", "--Evaluate-max-dets",
                         "200", "--Detect-max-dets", "200", "--Detect-voting-thresh", "0"])
    assert explicit["paths"] == thumos["paths"]
    assert thumos["rates"] == thumos["recipe_rates"] == (8.0, 16.0, 32.0)
    assert _resolve([*work, "--TSCProposals-rates", "[8, 16, 32]"])["tsc"] == thumos["tsc"]

    anet = _resolve([*work, "--dataset-preset", "anet"])
    assert anet["train"] == {"input_length": 192, "max_seq_len": 192, "class_agnostic": True}
    assert anet["tious"] == list(ANET_TIOUS) == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert anet["post"] == {"max_dets": 100, "nms_sigma": 0.75, "voting_thresh": 0.9} and anet["cap"] == 200
    assert anet["tadtr"] == {"max_dets": 100, "nms_sigma": None, "voting_thresh": 0.0}  # its own set prediction
    assert anet["requires"] == "FuseVideoClasses" and anet["recipe"] == DetectorInputRecipe(192, True)
    assert set(anet["paths"]).isdisjoint(thumos["paths"])
    # change points for ~2-minute videos with 1-2 long actions, recorded for single-video inference too
    assert anet["rates"] == anet["recipe_rates"] == (0.5, 1.0, 2.0) and anet["tsc"] != thumos["tsc"]
    # the preset shapes the proposals store only through its rates; given ones win
    assert _resolve([*work, "--dataset-preset", "anet", "--TSCProposals-rates", "[8, 16, 32]"])["tsc"] == thumos["tsc"]
    # each value the user gives wins over the preset's
    mine = _resolve([*work, "--dataset-preset", "anet", "--actionformer-train", '{"class_agnostic": false}',
                     "--Evaluate-tiou-thresholds", "[0.5]", "--Detect-nms-sigma", "0.5"])
    assert mine["train"]["class_agnostic"] is False and mine["train"]["input_length"] == 192
    assert mine["requires"] == "Detect" and mine["tious"] == [0.5] and mine["post"]["nms_sigma"] == 0.5
