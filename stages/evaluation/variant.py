"""One detector run's identity: which detector, with BAPG or not and from which boundaries, which seed, trained or
not. The Report task keys its inputs by it and the report reads them by it; detections.json and evaluation.json
record it as "variant" (Variant.record)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple


class Variant(NamedTuple):
    detector: str
    bapg: bool = False
    source: str | None = None  # where the BAPG boundaries came from (proposals.BOUNDARY_SOURCES); None without
    seed: int = 0
    untrained: bool = False

    @classmethod
    def of(cls, detector: str, bapg: bool = False, source: str | None = "tsc", seed: int = 0,
           untrained: bool = False) -> Variant:
        """The variant with its source normalised: None without BAPG (it shapes nothing), "tsc" when not given."""
        return cls(str(detector), bool(bapg), (source or "tsc") if bapg else None, int(seed), bool(untrained))

    @classmethod
    def from_record(cls, record: Mapping) -> Variant:
        """The variant of a "variant" record; older records may lack bapg_source ("tsc") and untrained (False)."""
        return cls.of(record["detector"], record.get("bapg", False), record.get("bapg_source"), record.get("seed", 0),
                      record.get("untrained", False))

    def record(self) -> dict:
        """The "variant" of detections.json and evaluation.json (what the report groups by)."""
        return {"detector": self.detector, "bapg": self.bapg, "bapg_source": self.source, "seed": self.seed,
                "untrained": self.untrained}
