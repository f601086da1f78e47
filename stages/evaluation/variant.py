"""One detector run's identity: which detector, with BAPG or not, from which boundaries and with which channel
groups, which seed, trained or not. The Report task keys its inputs by it and the report reads them by it;
detections.json and evaluation.json record it as "variant" (Variant.record). The report's row of a variant is
named by `row_name` and ordered by `row_order`."""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from tal_pipeline.stages.bapg.proposal_features import DEFAULT_GROUPS, GROUPS, normalise_groups


class Variant(NamedTuple):
    detector: str
    bapg: bool = False
    bapg_source: str | None = None  # where the BAPG boundaries came from (proposals.BOUNDARY_SOURCES); None without
    seed: int = 0
    untrained: bool = False
    # the channel groups of the BAPG input (proposal_features.GROUPS, in their order); None without BAPG
    bapg_groups: tuple[str, ...] | None = None

    @classmethod
    def of(cls, detector: str, bapg: bool = False, bapg_source: str | None = "tsc", seed: int = 0,
           untrained: bool = False, bapg_groups=None) -> Variant:
        """The variant with its source and groups normalised: None without BAPG (they shape nothing), "tsc" and
        proposal_features.DEFAULT_GROUPS when not given."""
        return cls(str(detector), bool(bapg), (bapg_source or "tsc") if bapg else None, int(seed), bool(untrained),
                   normalise_groups(bapg_groups or DEFAULT_GROUPS) if bapg else None)

    @classmethod
    def read(cls, record: Mapping, where: str) -> Variant:
        """The variant of a "variant" record (Variant.record); ValueError naming `where` when a key is missing."""
        missing = [k for k in RECORD_KEYS if k not in record] if isinstance(record, Mapping) else list(RECORD_KEYS)
        if missing:
            raise ValueError(f"{where}: the variant record lacks {missing} (it holds {RECORD_KEYS})")
        return cls.of(record["detector"], record["bapg"], record["bapg_source"], record["seed"], record["untrained"],
                      record["bapg_groups"])

    def record(self) -> dict:
        """The "variant" of detections.json and evaluation.json (what the report groups by)."""
        return {"detector": self.detector, "bapg": self.bapg, "bapg_source": self.bapg_source, "seed": self.seed,
                "untrained": self.untrained,
                "bapg_groups": list(self.bapg_groups) if self.bapg_groups is not None else None}

    @property
    def default_groups(self) -> bool:
        """True without BAPG or with the default channel groups (the row name then names no groups)."""
        return self.bapg_groups is None or tuple(self.bapg_groups) == DEFAULT_GROUPS


RECORD_KEYS = ("detector", "bapg", "bapg_source", "seed", "untrained", "bapg_groups")  # Variant.record's
# Where the BAPG boundaries came from -> the row name's suffix; the dict order is the row order.
BAPG_SOURCES = {"tsc": "", "raw": " (raw features, no encoder)", "random": " (random change points)",
                "oracle": " (ground-truth boundaries, oracle)"}


def row_name(detector: str, bapg: bool, source: str | None = None, untrained: bool = False, groups=None) -> str:
    """"afsd", "afsd + BAPG", "afsd + BAPG (random change points)", "afsd + BAPG [pooled, novelty]" (channel groups
    other than the default), ..., "afsd (untrained)"."""
    name = detector
    if bapg:
        source = source or "tsc"
        name += " + BAPG" + BAPG_SOURCES.get(source, f" ({source})")
        groups = normalise_groups(groups or DEFAULT_GROUPS)
        if groups != DEFAULT_GROUPS:
            name += f" [{', '.join(groups)}]"
    return name + (" (untrained)" if untrained else "")


def variant_name(variant: Variant) -> str:
    """The report row name of a variant (row_name)."""
    return row_name(variant.detector, variant.bapg, variant.bapg_source, variant.untrained, variant.bapg_groups)


def row_order(variant: Variant) -> tuple:
    """Sort key of the report's rows: per detector, trained before untrained, baseline, + BAPG, then the ablations
    in BAPG_SOURCES order, each source's default channel groups first, then other groups by how many and which
    (the seed is not part of a row)."""
    sources = list(BAPG_SOURCES)
    rank = sources.index(variant.bapg_source) if variant.bapg_source in sources else len(sources)
    groups = () if variant.default_groups else tuple(GROUPS.index(g) for g in variant.bapg_groups)
    return variant.detector, variant.untrained, variant.bapg, rank, variant.bapg_source or "", len(groups), groups
