"""The inference recipe (stages.recipe): written by TrainDetector, read back by the one validated reader."""
from __future__ import annotations

import pytest
import torch

from tal_pipeline.stages.detectors.recipe import BapgRecipe, FeaturesRecipe, FramesRecipe, InferenceRecipe


def _bapg(**overrides) -> BapgRecipe:
    values = dict(source="tsc", use_encoder=True, block=512, ms=(), rates=(8.0, 16.0), penalty=0.0, min_size=1,
                  max_union=3, projection_dim=128, projection_seed=0, groups=("pooled", "boundary"))
    return BapgRecipe(**{**values, **overrides})


def _recipe(**overrides) -> InferenceRecipe:
    values = dict(features=FeaturesRecipe("ExtractFeatures", 16, 4, "i3d-rgb-k400"), frames=FramesRecipe(8.0, 64),
                  bapg=_bapg())
    return InferenceRecipe(**{**values, **overrides})


def test_recipe_round_trips_through_a_weights_only_checkpoint(tmp_path):
    recipe = _recipe()
    torch.save({"inputs": recipe.to_dict()}, tmp_path / "c.pt")
    stored = torch.load(tmp_path / "c.pt", weights_only=True)["inputs"]
    assert InferenceRecipe.from_dict(stored, bapg=True) == recipe
    assert stored["bapg"]["rates"] == [8.0, 16.0] and stored["bapg"]["block"] == 512
    baseline = _recipe(bapg=None)
    assert InferenceRecipe.from_dict(baseline.to_dict(), bapg=False) == baseline
    assert "bapg" not in baseline.to_dict()


def test_reader_names_the_missing_or_malformed_key():
    data = _recipe().to_dict()
    del data["bapg"]["block"]
    with pytest.raises(ValueError, match=r"ckpt.pt: config\['inputs'\]\['bapg'\].*missing key\(s\) \['block'\]"):
        InferenceRecipe.from_dict(data, bapg=True, where="ckpt.pt")
    # A baseline does not need the BAPG section, so the same recipe reads as one.
    assert InferenceRecipe.from_dict(data, bapg=False).bapg is None

    data = _recipe().to_dict()
    data["bapg"]["use_encoder"] = "yes"
    with pytest.raises(ValueError, match="use_encoder = 'yes' is not of type bool"):
        InferenceRecipe.from_dict(data, bapg=True)
    data = _recipe().to_dict()
    data["frames"]["size"] = 64.5
    with pytest.raises(ValueError, match="size = 64.5 is not of type int"):
        InferenceRecipe.from_dict(data, bapg=True)
    data = _recipe().to_dict()
    del data["frames"]
    with pytest.raises(ValueError, match="no 'frames' section"):
        InferenceRecipe.from_dict(data, bapg=True)
    with pytest.raises(ValueError, match="expected a mapping"):
        InferenceRecipe.from_dict([1, 2], bapg=False)


def test_only_inputs_computed_from_the_video_run_on_a_raw_video():
    _recipe().require_raw_video_inference()
    imported = _recipe(features=FeaturesRecipe("ImportFeatures", 16, 4, None), frames=None)
    with pytest.raises(ValueError, match="imported features"):
        imported.require_raw_video_inference("x.pt")
    with pytest.raises(ValueError, match="weights 'other'"):
        _recipe(features=FeaturesRecipe("ExtractFeatures", 16, 4, "other")).require_raw_video_inference()
    with pytest.raises(ValueError, match="oracle"):
        _recipe(bapg=_bapg(source="oracle")).require_raw_video_inference()


def test_a_recipe_without_a_similarity_records_no_tiling():
    oracle = _recipe(bapg=_bapg(source="oracle", use_encoder=False, block=None))
    assert InferenceRecipe.from_dict(oracle.to_dict(), bapg=True) == oracle
    assert oracle.to_dict()["bapg"]["block"] is None
    for bad in ("512", True, 512.5):  # a number in a string, a bool passing as 1, a fraction
        data = _recipe().to_dict()
        data["bapg"]["block"] = bad
        with pytest.raises(ValueError, match=r"block = .* is not of type int \| None"):
            InferenceRecipe.from_dict(data, bapg=True)
    with pytest.raises(ValueError, match="no similarity tiling"):
        _recipe(bapg=_bapg(block=None)).require_raw_video_inference()


def test_channel_groups_round_trip_and_a_recipe_without_them_is_refused(tmp_path):
    every = _recipe(bapg=_bapg(groups=("pooled", "boundary", "novelty", "strength")))
    torch.save({"inputs": every.to_dict()}, tmp_path / "c.pt")
    stored = torch.load(tmp_path / "c.pt", weights_only=True)["inputs"]
    assert stored["bapg"]["groups"] == ["pooled", "boundary", "novelty", "strength"]
    assert InferenceRecipe.from_dict(stored, bapg=True) == every
    novelty = _recipe(bapg=_bapg(groups=("novelty",)))
    assert InferenceRecipe.from_dict(novelty.to_dict(), bapg=True).bapg.groups == ("novelty",)
    old = _recipe().to_dict()  # written before B had groups: retrain
    del old["bapg"]["groups"]
    with pytest.raises(ValueError, match=r"missing key\(s\) \['groups'\].*retrain"):
        InferenceRecipe.from_dict(old, bapg=True)
    for bad, message in ((["pooled", "edges"], r"unknown channel group\(s\) \['edges'\].*retrain"),
                         ([], "at least one channel group"), ("pooled", "groups = 'pooled' is not of type"),
                         ([1, 2], r"groups = \[1, 2\] is not of type tuple\[str, \.\.\.\]"),
                         (["boundary", "pooled"], "not in the channel order")):
        data = _recipe().to_dict()
        data["bapg"]["groups"] = bad
        with pytest.raises(ValueError, match=message):
            InferenceRecipe.from_dict(data, bapg=True, where="ckpt.pt")
