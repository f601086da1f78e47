"""`tal-pipeline gc`: the artifacts of a workdir that no kept task graph reaches, and their removal.

Only entries directly in the workdir that are shaped like the pipeline's artifacts are candidates:
`<stage>-<hash>` folders and `<stage>-<hash>.zarr` stores with their `.zarr.tmp` / `.zarr.failures.json`
siblings, the latest-report copy `report/`, and the hidden temporaries `.<name>.<random>.tmp` of crashed writers.
Anything else (a user's file, a dataset folder, links) is never touched, nor is anything outside the workdir.
"""
from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipeline.graph import LATEST_REPORT, disk_size

# <stage>-<10 hex>[.zarr][.tmp | .failures.json]: every hashed artifact name (pipeline.base.StageTask.artifact_path,
# pipeline.dataset.synthetic_dir, storage.zarr_store's siblings of a store).
ARTIFACT = re.compile(r"^(?P<base>[a-z][a-z0-9_]*-[0-9a-f]{10}(?:\.zarr)?)(?:\.tmp|\.failures\.json)?$")
# A crashed writer's temporary: storage.atomic's `.<name>.<hex>.tmp` (gc's own renames end the same way).
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8,32}\.tmp$")


@dataclass(frozen=True)
class Unreachable:
    path: Path
    bytes: int
    why: str  # "not in the kept graphs" | "temporary of a crashed writer"


def _is_artifact_name(name: str) -> bool:
    return bool(ARTIFACT.match(name)) or name == LATEST_REPORT


def unreachable(workdir: Path, reachable: set[str], protected: list[Path]) -> list[Unreachable]:
    """Entries of `workdir` shaped like artifacts whose artifact (the store of a sibling) is not in `reachable`
    (names of workdir entries), sorted by name. `protected`: paths never listed (the configured dataset), nor
    anything holding them."""
    found = []
    protected = [p.resolve() for p in protected]
    for entry in sorted(Path(workdir).iterdir(), key=lambda p: p.name):
        name = entry.name
        if entry.is_symlink():
            continue
        if any(p == entry.resolve() or p.is_relative_to(entry.resolve()) for p in protected):
            continue
        temporary = TEMPORARY.match(name)
        if temporary and _is_artifact_name(temporary.group("name")):
            found.append(Unreachable(entry, disk_size(entry), "temporary of a crashed writer"))
            continue
        match = ARTIFACT.match(name)
        base = match.group("base") if match else name if name == LATEST_REPORT else None
        if base is not None and base not in reachable:
            found.append(Unreachable(entry, disk_size(entry), "not in the kept graphs"))
    return found


def remove(entry: Path) -> None:
    """Rename out of the way first (atomic), then delete: an interrupted gc never leaves a half-deleted artifact
    under its name (it would look complete with its flag still in), only a temporary that the next gc removes."""
    hidden = entry.with_name(f".{entry.name}.{uuid.uuid4().hex[:8]}.tmp")
    if not TEMPORARY.match(entry.name):
        entry.rename(hidden)
        entry = hidden
    if entry.is_dir():
        shutil.rmtree(entry)
    else:
        entry.unlink()
