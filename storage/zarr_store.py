"""The Zarr artifact store every stage writes: one array per video, written atomically.

Layout of a store (a plain Zarr v3 group; ``zarr.open_group(path, mode="r")`` reads it):

    <stage>-<hash>.zarr/
        zarr.json              group attributes: stage, params, provenance
        <video>/               one time-chunked array per video (Blosc/zstd, then a crc32c per chunk), its own
                               attributes; every chunk is stored, so a missing chunk file is damage (storage.integrity)
        .complete              JSON flag, written last, only when every video is in
    <stage>-<hash>.zarr.tmp/   temporaries of unfinished videos (swept when a writer opens)
    <stage>-<hash>.zarr.failures.json   the stage's failure report (video -> reason), if any

A video's array is written into the temporary sibling folder and renamed into the group only when
complete, so a crash never leaves an array that looks finished: a video is done exactly when its
folder exists in the group. This is the per-video marker that lets a stage resume per video.
"""
from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zarr

from tal_pipeline.storage.atomic import atomic_folder, atomic_write
from tal_pipeline.storage.integrity import CheckedArray, checksum_codec
from tal_pipeline.storage.manifest import sha256_file
from tal_pipeline.storage.paths import VIDEO_ID_PATTERN, check_video_id

COMPLETE_FLAG = ".complete"


def compressor():
    """Blosc/zstd with bit-shuffle: good on float features and uint8 frames alike."""
    return zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")


def codecs() -> list:
    """The bytes-to-bytes codecs of every array: Blosc, then a crc32c of the compressed chunk (storage.integrity)."""
    return [compressor(), checksum_codec()]


def _jsonable(value):
    """Attributes must be JSON: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


class ArtifactStore:
    """A stage's Zarr store: per-video arrays, attributes, completeness flag."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp_root = self.path.with_name(self.path.name + ".tmp")
        self.failure_report = self.path.with_name(self.path.name + ".failures.json")

    # -- state ------------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.path / "zarr.json").is_file()

    def is_complete(self) -> bool:
        return (self.path / COMPLETE_FLAG).is_file()

    def completion(self) -> dict:
        """The payload of the completeness flag (videos, skipped failures, time)."""
        return json.loads((self.path / COMPLETE_FLAG).read_text())

    def done_videos(self) -> set[str]:
        """Videos whose array is fully written (their folder was renamed in)."""
        if not self.path.is_dir():
            return set()
        return {p.name for p in self.path.iterdir() if p.is_dir() and (p / "zarr.json").is_file()}

    def is_done(self, video: str) -> bool:
        """`video in done_videos()` from the video's own folder alone (two stats, not a listing of the store)."""
        safe = isinstance(video, str) and VIDEO_ID_PATTERN.fullmatch(video) and ".." not in video
        return bool(safe) and (self.path / video).is_dir() and (self.path / video / "zarr.json").is_file()

    # -- writing -----------------------------------------------------------------------------
    def begin(self, attrs: dict) -> None:
        """Create the group (or reopen it to resume) and sweep temporaries of a crashed run.

        A store reopened with different parameters is refused: its path hash should have differed.
        """
        attrs = _jsonable(attrs)
        if self.exists():
            group = zarr.open_group(str(self.path), mode="r")
            old = group.attrs.get("params")
            if old is not None and old != attrs.get("params"):
                raise ValueError(f"store {self.path} was written with other parameters: {old} != {attrs.get('params')}")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            zarr.open_group(str(self.path), mode="w", attributes=attrs)
        self.sweep_temporaries()

    def sweep_temporaries(self) -> None:
        shutil.rmtree(self.tmp_root, ignore_errors=True)
        for stray in self.path.parent.glob(f".{self.path.name}*.tmp"):
            stray.unlink(missing_ok=True)

    @contextmanager
    def video_array(
        self,
        video: str,
        shape: tuple[int, ...],
        dtype,
        chunks: tuple[int, ...],
        dimension_names: list[str],
        attrs: dict | None = None,
    ) -> Iterator[zarr.Array]:
        """Yield a new array for `video` in a temporary folder; rename it in on clean exit.

        The array may be resized while written (frame counts are known only after decoding).
        On an exception the temporary is removed and nothing of the video appears in the store.
        """
        check_video_id(video, str(self.path))
        # A finished copy from an earlier attempt is kept: same params, same content.
        with atomic_folder(self.path / video, self.tmp_root / f"{video}-{uuid.uuid4().hex[:8]}",
                           keep_existing=True) as tmp:
            yield zarr.create_array(
                store=str(tmp),
                shape=shape,
                chunks=tuple(max(1, min(c, s)) if s > 0 else max(1, c) for c, s in zip(chunks, shape)),
                dtype=dtype,
                compressors=codecs(),
                dimension_names=dimension_names,
                attributes=_jsonable(attrs or {}),
                zarr_format=3,
                config={"write_empty_chunks": True},  # all-zero chunks too: a missing chunk is then damage
            )

    def write_video(self, video: str, data: np.ndarray, chunk_len: int, dimension_names: list[str], attrs=None) -> None:
        """Write one whole array for `video`, time-chunked on axis 0."""
        chunks = (chunk_len,) + tuple(data.shape[1:])
        with self.video_array(video, data.shape, data.dtype, chunks, dimension_names, attrs) as array:
            array[...] = data

    def mark_complete(self, videos: list[str], skipped: dict[str, str] | None = None) -> None:
        """Write the flag, last: the store is complete only if every expected video is in."""
        missing = sorted(set(videos) - set(skipped or {}) - self.done_videos())
        if missing:
            raise RuntimeError(f"store {self.path}: cannot mark complete, videos missing: {missing[:10]}")
        payload = {"videos": sorted(set(videos) - set(skipped or {})), "skipped": skipped or {}, "time": time.time(),
                   "files": self._file_digests()}
        atomic_write(self.path / COMPLETE_FLAG, json.dumps(payload, indent=1))
        shutil.rmtree(self.tmp_root, ignore_errors=True)

    def _file_digests(self) -> dict[str, str]:
        """sha256 of the store's own files (recall tables and the like, written before the flag): verify checks them."""
        return {p.name: sha256_file(p) for p in sorted(self.path.iterdir())
                if p.is_file() and p.name not in ("zarr.json", COMPLETE_FLAG)}

    def write_failure_report(self, stage: str, failures: dict[str, str]) -> Path | None:
        """Record which videos failed and why (next to the store); removed when none failed."""
        if not failures:
            self.failure_report.unlink(missing_ok=True)
            return None
        report = {"stage": stage, "store": str(self.path), "failures": dict(sorted(failures.items()))}
        atomic_write(self.failure_report, json.dumps(report, indent=1))
        return self.failure_report

    def remove(self) -> None:
        """Delete the store and its temporaries (used by --force)."""
        # Drop the flag first so a crash mid-removal never leaves a store that looks complete.
        (self.path / COMPLETE_FLAG).unlink(missing_ok=True)
        shutil.rmtree(self.path, ignore_errors=True)
        shutil.rmtree(self.tmp_root, ignore_errors=True)
        self.failure_report.unlink(missing_ok=True)

    # -- reading -----------------------------------------------------------------------------
    def group(self) -> zarr.Group:
        if not self.exists():
            raise FileNotFoundError(f"no Zarr store at {self.path}")
        return zarr.open_group(str(self.path), mode="r")

    def attrs(self) -> dict:
        return dict(self.group().attrs)

    def read(self, video: str) -> CheckedArray:
        """A video's array, opened read-only; a damaged chunk fails the read (ArtifactDamaged), never gives values."""
        if not self.is_done(video):  # not done_videos(): a read per video would list the store each time
            raise KeyError(f"store {self.path} has no finished array for video {video!r}")
        return CheckedArray(self.path / video)

    def invalidate(self, videos: list[str]) -> None:
        """Remove these videos' arrays and the completeness flag, so the stage reruns and recomputes just them."""
        (self.path / COMPLETE_FLAG).unlink(missing_ok=True)  # first: never a complete-looking store without them
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        for video in videos:
            check_video_id(video, str(self.path))
            if (self.path / video).exists():  # renamed out first: a half-removed array never looks done
                gone = self.tmp_root / f"{video}-removed-{uuid.uuid4().hex[:8]}"
                (self.path / video).rename(gone)
                shutil.rmtree(gone, ignore_errors=True)

    def videos(self) -> list[str]:
        return sorted(self.done_videos())
