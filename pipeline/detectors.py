"""The detectors the pipeline runs, registered in one place (docs/extending.md).

`register_detector(name, model, small_train)` gives a detector everything the pipeline needs: its
`--detector` choice (DetectorParameter), its configuration section `[name]` with `model`, `train` and `fusion`
JSON (pipeline.config.detector_section), its small recipe's training settings (stages.detectors.recipes.SMALL_TRAIN),
its class for training and inference (models.detector_registry.DETECTORS) and so its report rows
(`--Report-detectors '["name"]'`). The package's own four are registered when this module is imported, without
torch: their classes are in models.detector_registry already.
"""
from __future__ import annotations

from collections.abc import Mapping

import luigi

BUILTIN = ("afsd", "actionformer", "tridet", "tadtr")
_NAMES: list[str] = []


def register_detector(name: str, model: type | None = None, small_train: Mapping | None = None) -> None:
    """Register detector `name` (idempotent). model: its torch module class (the interface of
    models.detector_registry; None for the package's own); small_train: the small recipe's training settings over
    stages.detectors.training.DEFAULT_TRAIN (None: keep those registered, else the defaults)."""
    from pipeline.config import detector_section
    from tal_pipeline.stages.detectors.recipes import SMALL_TRAIN

    if not name.isidentifier() or name.lower() != name:
        raise ValueError(f"detector name {name!r}: a lowercase identifier is needed (it names a config section)")
    if model is not None:
        from tal_pipeline.models.detector_registry import DETECTORS

        DETECTORS[name] = model
    if small_train is not None:
        SMALL_TRAIN[name] = dict(small_train)
    detector_section(name)
    if name not in _NAMES:
        _NAMES.append(name)


def detector_names() -> tuple[str, ...]:
    """The registered detectors, the package's own first."""
    return tuple(_NAMES)


class DetectorParameter(luigi.Parameter):
    """A registered detector's name; checked when parsed, so an unknown name fails naming the known ones."""

    def normalize(self, x):
        if x not in _NAMES:
            raise ValueError(f"unknown detector {x!r}; registered: {list(_NAMES)} (pipeline.detectors."
                             "register_detector)")
        return x


for _name in BUILTIN:
    register_detector(_name)
