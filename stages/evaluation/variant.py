"""One detector run's identity: which detector, with BAPG or not and from which boundaries, which seed, trained or
not. The Report task keys its inputs by it and the report reads them by it; detections.json and evaluation.json
record it as "variant" (Variant.record). The report's row of a variant is named by `row_name` and ordered by
`row_order`."""
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


# Where the BAPG boundaries came from -> the row name's suffix; the dict order is the row order.
BAPG_SOURCES = {"tsc": "", "raw": " (raw features, no encoder)", "random": " (random change points)",
                "oracle": " (ground-truth boundaries, oracle)"}


def row_name(detector: str, bapg: bool, source: str | None = None, untrained: bool = False) -> str:
    """"afsd", "afsd + BAPG", "afsd + BAPG (random change points)", ..., "afsd (untrained)"."""
    name = detector
    if bapg:
        source = source or "tsc"
        name += " + BAPG" + BAPG_SOURCES.get(source, f" ({source})")
    return name + (" (untrained)" if untrained else "")


def row_order(variant: Variant) -> tuple:
    """Sort key of the report's rows: per detector, trained before untrained, baseline, + BAPG, then the ablations
    in BAPG_SOURCES order (the seed is not part of a row)."""
    sources = list(BAPG_SOURCES)
    rank = sources.index(variant.source) if variant.source in sources else len(sources)
    return variant.detector, variant.untrained, variant.bapg, rank, variant.source or ""
