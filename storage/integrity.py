"""Chunk checksums of the Zarr stores: every array is written with a crc32c codec (after the compressor) and with
every chunk stored, so a flipped, truncated or missing chunk file is found, never read back as values.

Reads go through CheckedArray (ArtifactStore.read): zarr's own checksum error names no chunk, so on a failed read
the array's chunk files are checked here and the error names the store, the video and the chunk. Arrays written
before the codec (no crc32c in their metadata) still read; `tal-pipeline verify` reports them as "no checksums".
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import zarr

CHECKSUM = "crc32c"


class ArtifactDamaged(ValueError):
    """Stored data that no longer matches its checksum: names the artifact, the video and the chunk or file."""

    def __init__(self, artifact: str | Path, problems: list[tuple[str, str]], video: str | None = None):
        self.artifact, self.video, self.problems = str(artifact), video, problems
        where = f"store {artifact}, video {video!r}" if video is not None else f"artifact {artifact}"
        listing = "; ".join(f"{name}: {reason}" for name, reason in problems[:5])
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"damaged data in {where}: {listing}{more}. Run `tal-pipeline verify --repair` on it "
                         "to remove the damaged part, then rerun to recompute it")


def checksum_codec() -> zarr.codecs.Crc32cCodec:
    """The bytes-to-bytes codec that stores a crc32c of each (compressed) chunk after it."""
    return zarr.codecs.Crc32cCodec()


def array_metadata(array_path: Path) -> dict:
    """An array's zarr.json; unreadable metadata is damage too."""
    try:
        meta = json.loads((array_path / "zarr.json").read_text())
        _ = meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"]
        return meta
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ArtifactDamaged(array_path.parent, [("zarr.json", f"unreadable array metadata ({exc})")],
                              array_path.name) from None


def has_checksums(meta: dict) -> bool:
    return any(c.get("name") == CHECKSUM for c in meta.get("codecs", []) if isinstance(c, dict))


def chunk_keys(meta: dict) -> list[str]:
    """Every chunk's key ("c/i/j") of a regular chunk grid with the default "/" key encoding."""
    shape, chunks = meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"]
    grid = [range(math.ceil(s / c)) for s, c in zip(shape, chunks)]
    return ["/".join(["c", *map(str, index)]) for index in itertools.product(*grid)]


def chunk_problem(chunk_file: Path) -> str | None:
    """Why a checksummed chunk file is damaged (missing, too short, checksum mismatch), or None if it is intact."""
    import google_crc32c

    try:
        data = chunk_file.read_bytes()
    except FileNotFoundError:
        return "missing chunk file"
    if len(data) < 4:
        return f"truncated ({len(data)} bytes)"
    if google_crc32c.value(data[:-4]) != int.from_bytes(data[-4:], "little"):
        return "checksum mismatch"
    return None


def damaged_chunks(array_path: str | Path) -> list[tuple[str, str]]:
    """[(chunk key, reason)] of a checksummed array (reads every chunk file); [] for an array without checksums."""
    array_path = Path(array_path)
    meta = array_metadata(array_path)
    if not has_checksums(meta):
        return []
    found = []
    for key in chunk_keys(meta):
        reason = chunk_problem(array_path / key)
        if reason is not None:
            found.append((key, reason))
    return found


def decode_problem(array_path: str | Path, rows: int = 4096) -> str | None:
    """Read an array without checksums through zarr in row blocks: a decode failure is all that can be found."""
    try:
        array = zarr.open_array(str(array_path), mode="r")
        for start in range(0, array.shape[0] if array.ndim else 1, rows):
            np.asarray(array[start:start + rows] if array.ndim else array[...])
    except Exception as exc:  # any codec or I/O failure is damage here
        return f"unreadable: {exc}"
    return None


class CheckedArray:
    """A read-only zarr array whose reads fail with ArtifactDamaged (store, video, chunk) on a damaged chunk.

    Holds the array's chunk-count check as well: a missing chunk file would read back as the fill value.
    """

    def __init__(self, array_path: str | Path):
        self._path = Path(array_path)
        meta = array_metadata(self._path)
        self._checked = has_checksums(meta)
        if self._checked:
            missing = [(k, "missing chunk file") for k in chunk_keys(meta) if not (self._path / k).is_file()]
            if missing:
                raise self._error(missing)
        self._array = zarr.open_array(str(self._path), mode="r")

    def _error(self, problems):
        return ArtifactDamaged(self._path.parent, [(f"chunk {key}", why) for key, why in problems], self._path.name)

    def _read(self, read):
        try:
            return read()
        except Exception as exc:
            problems = damaged_chunks(self._path) if self._checked else []
            if problems:
                raise self._error(problems) from exc
            raise

    def __getitem__(self, selection):
        return self._read(lambda: self._array[selection])

    @property
    def oindex(self):
        outer = self

        class _Outer:
            def __getitem__(self, selection):
                return outer._read(lambda: outer._array.oindex[selection])

        return _Outer()

    def __array__(self, dtype=None, copy=None):
        data = self[...]
        return data if dtype is None else data.astype(dtype, copy=False)

    def __len__(self) -> int:
        return len(self._array)

    def __getattr__(self, name):  # shape, dtype, chunks, attrs, ndim ...
        if name.startswith("_"):  # not set yet (copy, unpickling): no recursion through self._array
            raise AttributeError(name)
        return getattr(self._array, name)
