"""sha256 of every file of a folder artifact (checkpoint.pt, its JSON), in SHA256SUMS next to them.

The manifest is written into the artifact's temporary folder before its DONE file, so it is renamed into place
with the files (pipeline.base.DoneFileTarget.writer). It has `sha256sum`'s format: `sha256sum -c SHA256SUMS` in
the folder checks it too. Readers of a checkpoint call verified_file() before torch.load.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from tal_pipeline.storage.atomic import atomic_write
from tal_pipeline.storage.integrity import ArtifactDamaged

MANIFEST = "SHA256SUMS"
UNLISTED = {MANIFEST, "DONE"}  # DONE is written after the manifest; its content is a time stamp


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in UNLISTED)


def write_manifest(folder: str | Path) -> Path:
    """Record the sha256 of every file under `folder` (relative paths) in folder/SHA256SUMS."""
    folder = Path(folder)
    lines = [f"{sha256_file(p)}  {p.relative_to(folder).as_posix()}\n" for p in _files(folder)]
    return atomic_write(folder / MANIFEST, "".join(lines))


def read_manifest(folder: str | Path) -> dict[str, str] | None:
    """{relative path: sha256} of folder/SHA256SUMS; None when the folder has none (written before checksums)."""
    file = Path(folder) / MANIFEST
    if not file.is_file():
        return None
    entries = {}
    for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise ArtifactDamaged(folder, [(MANIFEST, f"line {number} is not '<sha256>  <file>'")])
        entries[name] = digest
    return entries


def damaged_files(folder: str | Path) -> list[tuple[str, str]] | None:
    """[(file, reason)] of the files whose sha256 differs from the manifest or that are gone; None: no manifest."""
    folder = Path(folder)
    try:
        entries = read_manifest(folder)
    except ArtifactDamaged as exc:
        return exc.problems
    if entries is None:
        return None
    found = []
    for name, digest in sorted(entries.items()):
        file = folder / name
        if not file.is_file():
            found.append((name, "missing file"))
        elif sha256_file(file) != digest:
            found.append((name, "sha256 mismatch"))
    return found


def verified_file(path: str | Path) -> Path:
    """`path`, after checking it against its folder's manifest (ArtifactDamaged naming the file if it differs).

    A file of a folder without a manifest (written before checksums) or not listed in it is returned unchecked.
    """
    path = Path(path)
    entries = read_manifest(path.parent)
    if entries is not None and path.name in entries:
        if not path.is_file():
            raise ArtifactDamaged(path.parent, [(path.name, "missing file")])
        if sha256_file(path) != entries[path.name]:
            raise ArtifactDamaged(path.parent, [(path.name, f"sha256 mismatch (file {path})")])
    return path
