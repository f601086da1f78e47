"""docs/extending.md's detector example as a module luigi imports: `luigi --module tests.toy_detector Evaluate
--Evaluate-detector tinyformer ...` (tests/test_extending.py runs it)."""
from __future__ import annotations

import pipeline  # noqa: F401 - the tasks, as `luigi --module pipeline` has them
from pipeline.detectors import register_detector
from tal_pipeline.models.actionformer.model import ActionFormer


class TinyFormer(ActionFormer):
    """ActionFormer cut to two pyramid levels of width 16."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, levels: int = 2):
        super().__init__(in_channels, num_classes, width=width, levels=levels, heads=2, window=5, stem_blocks=1)


register_detector("tinyformer", TinyFormer, small_train={"epochs": 1, "batch_size": 2, "max_seq_len": 64})
