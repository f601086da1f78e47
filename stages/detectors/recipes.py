"""Named detector recipes: model options, training settings and post-processing per (recipe, preset, detector).

- "small": the small-data recipes (the built-in synthetic dataset and benchmarks): SMALL_TRAIN over
  stages.detectors.training.DEFAULT_TRAIN, the model constructors' defaults, the dataset preset's training and
  post-processing values (stages/presets.py). Chosen on 60 synthetic videos on 2 CPU cores (comments below).
- "published": each reference's own THUMOS14 I3D / ActivityNet configuration (stages.detectors.published_recipes,
  every value with its reference file), for a real dataset.

`[detectors] recipe = auto` (pipeline.config.detector_recipe) is published when the user gives videos or features
and small on the built-in synthetic dataset. Values the user sets ([<detector>] model / train JSON, Detect
options) always win over the recipe's. Plain data, no torch.
"""
from __future__ import annotations

from typing import Any

from tal_pipeline.stages.detectors.published_recipes import PUBLISHED, Ref

RECIPES = ("small", "published")
RECIPE_CHOICES = ("auto", *RECIPES)

# The small-data training recipes (over DEFAULT_TRAIN): each reference's optimiser, weight decay and crop rule, with lr
# chosen on held-out training videos, never the test split, and one budget rule for all four (160 epochs, 5 warm-up,
# one 90-100 % crop per video per epoch). The choices and their figures are in docs/method.md §8 and §12 ("One budget
# rule"); a TadTR window is its reference's 128 steps. AFSD keeps DEFAULT_TRAIN's lr and weight decay.
SMALL_TRAIN: dict[str, dict[str, Any]] = {
    "actionformer": {"epochs": 160, "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 5, "crop_ratio": [0.9, 1.0]},
    "tadtr": {"epochs": 160, "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 5, "grad_clip": 0.1,
              "max_seq_len": 128},
    "tridet": {"epochs": 160, "lr": 1e-3, "weight_decay": 0.025, "warmup_epochs": 5, "crop_ratio": [0.9, 1.0]},
    "afsd": {"epochs": 160, "warmup_epochs": 5, "crop_ratio": [0.9, 1.0]},
}


def check_recipe(name: str) -> str:
    """`name` if it is a recipe (auto resolved elsewhere), else ValueError naming the known ones."""
    if name not in RECIPES:
        raise ValueError(f"unknown detector recipe {name!r}; known: {list(RECIPE_CHOICES)}")
    return name


def _published(preset: str, detector: str) -> dict[str, dict[str, Ref]]:
    if detector not in PUBLISHED:
        raise ValueError(f"unknown detector {detector!r}; known: {sorted(PUBLISHED)}")
    if preset not in PUBLISHED[detector]:
        raise ValueError(f"no published recipe of {detector!r} for preset {preset!r}; known: "
                         f"{sorted(PUBLISHED[detector])}")
    return PUBLISHED[detector][preset]


def recipe_entry(recipe: str, preset, detector: str) -> dict[str, dict[str, Any]]:
    """{"model", "train", "post"} of detector `detector` under `recipe` for `preset` (a stages.presets.Preset).

    small: model {} (the constructor's defaults), train = the preset's training values (resolve_train_config lays
    them over SMALL_TRAIN), post {} (the preset's), then the preset's per-detector
    settings (preset.detectors: the published recipe's values of those options; anet). published: the reference's
    values (plain, without their sources), every SMALL_TRAIN key among them.
    """
    if check_recipe(recipe) == "small":
        out = {"model": {}, "train": dict(preset.train), "post": {}}
        chosen = preset.detectors.get(detector, {})
        if chosen:
            entry = _published(preset.name, detector)
            for part, keys in chosen.items():
                out[part].update({k: _plain(entry[part][k].value) for k in keys})
        return out
    entry = _published(preset.name, detector)
    return {part: {k: _plain(ref.value) for k, ref in entry[part].items()} for part in ("model", "train", "post")}


def recipe_sources(preset: str, detector: str) -> dict[str, str]:
    """{"<part>.<key>": reference file and key} of the published recipe of `detector` for `preset`."""
    entry = _published(preset, detector)
    return {f"{part}.{k}": ref.source for part in ("model", "train", "post") for k, ref in entry[part].items()}


def _plain(value):
    """A fresh copy of a JSON-able value (lists are shared by the tables)."""
    return [_plain(v) for v in value] if isinstance(value, list) else value
