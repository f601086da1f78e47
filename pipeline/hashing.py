"""Canonical forms and short, stable hashes of what shapes an artifact (gokart-style: a stage's spec together with
its upstream artifacts' hashes)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any


def canonical(value: Any) -> Any:
    """`value` as plain JSON data, one form per meaning: a whole float is an int (8 and 8.0 hash alike), tuples are
    lists, mappings have string keys, dataclasses are their fields, numpy scalars their Python values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (int, float)):  # a numpy scalar
        value = value.item()
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, int):
        return int(value)
    raise TypeError(f"cannot hash a value of type {type(value).__name__}: {value!r}")


def plain(value: Any) -> Any:
    """luigi's frozen JSON containers -> plain dicts and lists (specs and checkpoints hold plain data)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def param_hash(params: Any, length: int = 10) -> str:
    """sha1 of the canonical JSON of `params` (sorted keys), first `length` hex digits."""
    text = json.dumps(canonical(params), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def spec_hash(stage: str, spec: Any, upstream: Mapping[str, str]) -> str:
    """The hash in a stage's artifact path: its name, its spec and the hashes of the artifacts it reads, by role."""
    return param_hash({"stage": stage, "spec": spec, "upstream": dict(upstream)})
