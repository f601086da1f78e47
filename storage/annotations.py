"""Temporal annotations: one table, whatever the file layout.

Readers for the three layouts THUMOS14 is distributed in, all into one schema:

- ActivityNet-style JSON: ``{"database": {video: {"subset", "duration", "fps"?, "annotations":
  [{"segment": [s, e], "label"}], "ambiguous"?: [[s, e], ...]}}}`` (also our synthetic dataset);
- ActionFormer's THUMOS14 JSON (same layout, ``subset`` "Validation"/"Test", Ambiguous absent);
- G-TAD CSVs (``video,type,type_idx,start,end,startFrame,endFrame``; one file per subset, or a
  folder holding ``val_Annotation.csv`` / ``test_Annotation.csv``), optionally with AFSD's
  ``*_video_info.csv`` (fps and frame count) for durations.

Schema of :class:`Annotations`:
``videos``: video, subset, duration [s, NaN if unknown], fps [NaN if unknown];
``instances``: video, subset, label, start, end [s], ambiguous [bool].
THUMOS14's "Ambiguous" rows are kept apart (``ambiguous=True``, label "Ambiguous"); they are
never a class. Times are seconds; frame columns are ignored (THUMOS14's assume 30 fps).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tal_pipeline.storage.paths import check_video_id, read_json_mapping

log = logging.getLogger(__name__)

AMBIGUOUS = "Ambiguous"
VIDEO_COLUMNS = ["video", "subset", "duration", "fps"]
INSTANCE_COLUMNS = ["video", "subset", "label", "start", "end", "ambiguous"]


@dataclass
class Annotations:
    """Videos and their action instances, validated (see :func:`load_annotations`)."""

    videos: pd.DataFrame
    instances: pd.DataFrame
    source: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Sorted class names (Ambiguous excluded): the class index used by every model."""
        return sorted(self.instances.loc[~self.instances["ambiguous"], "label"].unique().tolist())

    @property
    def actions(self) -> pd.DataFrame:
        """Non-ambiguous instances only."""
        return self.instances[~self.instances["ambiguous"]].reset_index(drop=True)

    def subset(self, name: str | None) -> Annotations:
        """Videos of one subset; names compare case-insensitively (THUMOS14 says Test, ActivityNet test)."""
        if not name:
            return self
        want = name.casefold()
        keep = self.videos["subset"].str.casefold() == want
        if not keep.any():
            have = sorted(self.videos["subset"].unique())
            raise ValueError(f"{self.source}: no video in subset {name!r} (subsets present: {have})")
        videos = self.videos[keep].reset_index(drop=True)
        instances = self.instances[self.instances["video"].isin(set(videos["video"]))].reset_index(drop=True)
        return Annotations(videos, instances, self.source, list(self.warnings))

    def segments(self, video: str) -> pd.DataFrame:
        """Non-ambiguous instances of one video, sorted by start."""
        rows = self.instances[(self.instances["video"] == video) & ~self.instances["ambiguous"]]
        return rows.sort_values(["start", "end", "label"]).reset_index(drop=True)

    def duration(self, video: str) -> float:
        row = self.videos.loc[self.videos["video"] == video, "duration"]
        if row.empty:
            raise KeyError(f"{self.source}: video {video!r} is not in the annotations")
        return float(row.iloc[0])


def load_annotations(
    path: str | Path,
    labels: list[str] | None = None,
    beyond_duration: str = "clip",
    video_info: str | Path | None = None,
) -> Annotations:
    """Read any supported annotation layout and validate it.

    labels: the allowed class names; a label outside them is an error naming video and label.
    beyond_duration: "clip" (default) clips a segment's end to the video duration and drops a
        segment that starts at or after the end, and likewise clips a negative start to 0 and drops
        a segment that ends at or before 0, with a warning naming the videos; "keep" keeps
        segments past the end as written (what the raw files hold; THUMOS14 has 30 such segments)
        and refuses negative times.
    video_info: AFSD-style ``*_video_info.csv`` file or folder, for durations of G-TAD CSVs.
    """
    path = Path(path)
    if beyond_duration not in ("clip", "keep"):
        raise ValueError(f"beyond_duration must be 'clip' or 'keep', not {beyond_duration!r}")
    if not path.exists():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    if path.is_dir() or path.suffix.lower() == ".csv":
        videos, instances = _read_gtad_csv(path, video_info)
    elif path.suffix.lower() == ".json":
        videos, instances = _read_json(path)
    else:
        raise ValueError(f"annotation file {path}: unknown layout (expected .json or G-TAD .csv)")
    return _validate(videos, instances, str(path), labels, beyond_duration)


# ---------------------------------------------------------------------------------------------
# readers: each returns raw (videos, instances) frames in the common schema
# ---------------------------------------------------------------------------------------------
def _read_json(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    data = read_json_mapping(path, "annotation file", "database")
    if not data["database"]:
        raise ValueError(f"annotation file {path}: 'database' holds no video")
    video_rows, inst_rows = [], []
    for video, entry in data["database"].items():
        if not isinstance(entry, dict):
            raise ValueError(f"annotation file {path}: video {video!r} entry is not an object")
        subset = str(entry.get("subset", ""))
        duration = _number(entry.get("duration"), path, video, "duration", allow_missing=True)
        fps = _number(entry.get("fps"), path, video, "fps", allow_missing=True)
        video_rows.append((video, subset, duration, fps))
        anns = entry.get("annotations", [])
        if not isinstance(anns, list):
            raise ValueError(f"annotation file {path}: video {video!r}: 'annotations' is not a list")
        for ann in anns:
            seg = ann.get("segment") if isinstance(ann, dict) else None
            if not isinstance(seg, (list, tuple)) or len(seg) != 2 or "label" not in ann:
                raise ValueError(f"annotation file {path}: video {video!r}: malformed annotation {ann!r}")
            start = _number(seg[0], path, video, "segment start")
            end = _number(seg[1], path, video, "segment end")
            if ann["label"] is None or str(ann["label"]).strip() == "":
                raise ValueError(f"annotation file {path}: video {video!r}: annotation {ann!r} has no label")
            label = str(ann["label"])
            inst_rows.append((video, subset, label, start, end, label == AMBIGUOUS))
        ambiguous = entry.get("ambiguous", []) or []
        if not isinstance(ambiguous, list):
            raise ValueError(f"annotation file {path}: video {video!r}: 'ambiguous' is not a list of [start, end]")
        for seg in ambiguous:
            if not isinstance(seg, (list, tuple)) or len(seg) != 2:
                raise ValueError(f"annotation file {path}: video {video!r}: malformed ambiguous segment {seg!r}")
            start = _number(seg[0], path, video, "ambiguous start")
            end = _number(seg[1], path, video, "ambiguous end")
            inst_rows.append((video, subset, AMBIGUOUS, start, end, True))
    return _frames(video_rows, inst_rows)


_GTAD_SUBSETS = {"val": "validation", "validation": "validation", "test": "test"}


def _read_gtad_csv(path: Path, video_info: str | Path | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = sorted(path.glob("*_Annotation.csv")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"annotation folder {path} holds no *_Annotation.csv file")
    info = _read_video_info(Path(video_info)) if video_info else {}
    video_rows, inst_rows, seen = [], [], {}
    for file in files:
        subset = _GTAD_SUBSETS.get(file.name.split("_")[0].lower(), file.stem)
        table = _read_csv(file, "annotation file")
        missing = {"video", "type", "start", "end"} - set(table.columns)
        if missing:
            raise ValueError(f"annotation file {file}: missing columns {sorted(missing)} (G-TAD layout expected)")
        for column in ("start", "end"):
            bad = pd.to_numeric(table[column], errors="coerce").isna()
            if bad.any():
                row = table[bad].iloc[0]
                raise ValueError(f"annotation file {file}: video {row['video']!r}: "
                                 f"{column} {row[column]!r} is not a number")
        for video in table["video"].astype(str).unique():
            if video not in seen:
                fps, count = info.get(video, (math.nan, math.nan))
                seen[video] = True
                video_rows.append((video, subset, count / fps if fps == fps else math.nan, fps))
        for row in table.itertuples(index=False):
            label = str(row.type)
            inst_rows.append((str(row.video), subset, label, float(row.start), float(row.end), label == AMBIGUOUS))
    return _frames(video_rows, inst_rows)


def _read_video_info(path: Path) -> dict[str, tuple[float, float]]:
    files = sorted(path.glob("*_video_info.csv")) if path.is_dir() else [path]
    out = {}
    if not files:
        raise FileNotFoundError(f"video info {path}: no *_video_info.csv file")
    for file in files:
        table = _read_csv(file, "video info file")
        missing = {"video", "fps", "count"} - set(table.columns)
        if missing:
            raise ValueError(f"video info file {file}: missing columns {sorted(missing)} "
                             "(AFSD layout: video,fps,...,count)")
        for row in table.itertuples(index=False):
            fps, count = pd.to_numeric(pd.Series([row.fps, row.count]), errors="coerce")
            if not (fps > 0 and count >= 0):
                raise ValueError(f"video info file {file}: video {row.video!r}: "
                                 f"fps {row.fps!r} / count {row.count!r} invalid")
            out[str(row.video)] = (float(fps), float(count))
    return out


def _read_csv(file: Path, what: str) -> pd.DataFrame:
    """pandas.read_csv with errors that name the file (empty, not CSV, not text)."""
    if not file.is_file():
        raise FileNotFoundError(f"{what} {file} does not exist")
    if file.stat().st_size == 0:
        raise ValueError(f"{what} {file} is empty (0 bytes)")
    try:
        return pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {file} is not a readable CSV table: {exc}") from None


def _frames(video_rows, inst_rows) -> tuple[pd.DataFrame, pd.DataFrame]:
    videos = pd.DataFrame(video_rows, columns=VIDEO_COLUMNS).astype({"duration": float, "fps": float})
    instances = pd.DataFrame(inst_rows, columns=INSTANCE_COLUMNS).astype(
        {"start": float, "end": float, "ambiguous": bool}
    )
    return videos, instances


def finite_number(value, where: str, what: str, allow_missing: bool = False) -> float:
    """float(value), or ValueError "<where>: <what> ... is not a (finite) number"; None -> NaN if allow_missing.

    The one check of numbers read from annotation and prediction files (stages.evaluation too).
    """
    if value is None and allow_missing:
        return math.nan
    # bool is an int in Python; a true/false segment or score is a bug in the producer, not a number
    if isinstance(value, bool):
        raise ValueError(f"{where}: {what} {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {what} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: {what} is {value!r}, not a finite number")
    return number


def _number(value, path, video, what, allow_missing=False) -> float:
    return finite_number(value, f"annotation file {path}: video {video!r}", what, allow_missing)


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _warn(messages: list[str], text: str) -> None:
    messages.append(text)
    log.warning(text)


def _examples(frame: pd.DataFrame, n: int = 5) -> str:
    videos = sorted(frame["video"].unique())
    more = f" and {len(videos) - n} more" if len(videos) > n else ""
    return ", ".join(videos[:n]) + more


def _validate(videos, instances, source, labels, beyond_duration) -> Annotations:
    messages: list[str] = []
    _check_videos(videos, source)
    negative = instances["end"] < instances["start"]
    if negative.any():
        row = instances[negative].iloc[0]
        raise ValueError(f"{source}: video {row['video']!r}: "
                         f"segment [{row['start']}, {row['end']}] ends before it starts")
    instances = _clip_negative_starts(instances, source, beyond_duration, messages)
    if labels is not None:
        _check_labels(instances, labels, source)
    instances = _drop_empty_and_duplicates(instances, source, messages)
    if beyond_duration == "clip":
        instances = _clip_to_durations(instances, videos, source, messages)
    orphans = set(instances["video"]) - set(videos["video"])
    if orphans:
        raise ValueError(f"{source}: instances name videos with no entry: {sorted(orphans)[:5]}")
    instances = instances.sort_values(["video", "start", "end", "label"], kind="stable").reset_index(drop=True)
    return Annotations(videos.reset_index(drop=True), instances, source, messages)


def _check_videos(videos: pd.DataFrame, source: str) -> None:
    for video in videos["video"]:
        check_video_id(video, source)
    if videos["video"].duplicated().any():
        dup = videos.loc[videos["video"].duplicated(), "video"].iloc[0]
        raise ValueError(f"{source}: video {dup!r} appears twice")
    bad = (videos["duration"] <= 0)
    if bad.any():
        raise ValueError(f"{source}: video {videos.loc[bad, 'video'].iloc[0]!r}: duration must be positive")


def _clip_negative_starts(instances: pd.DataFrame, source: str, beyond_duration: str,
                          messages: list[str]) -> pd.DataFrame:
    """"keep" rejects a negative start; "clip" cuts off the part before the video starts (a segment wholly before
    it is dropped)."""
    before = instances["start"] < 0
    if before.any() and beyond_duration == "keep":
        row = instances[before].iloc[0]
        raise ValueError(f"{source}: video {row['video']!r}: segment starts at negative time {row['start']}")
    if not before.any():
        return instances
    gone = instances["end"] <= 0
    if gone.any():
        _warn(messages, f"{source}: dropped {int(gone.sum())} segment(s) that end before the video starts "
                        f"(t <= 0), in {_examples(instances[gone])}")
        instances, before = instances[~gone], before[~gone]
    if before.any():
        _warn(messages, f"{source}: clipped {int(before.sum())} negative segment start(s) to 0 in "
                        f"{_examples(instances[before])}")
        instances = instances.assign(start=instances["start"].clip(lower=0.0))
    return instances


def _check_labels(instances: pd.DataFrame, labels: list[str], source: str) -> None:
    unknown = instances[~instances["ambiguous"] & ~instances["label"].isin(set(labels))]
    if not unknown.empty:
        row = unknown.iloc[0]
        raise ValueError(
            f"{source}: video {row['video']!r}: unknown label {row['label']!r} "
            f"({unknown['label'].nunique()} unknown label(s) in {unknown['video'].nunique()} video(s))"
        )


def _drop_empty_and_duplicates(instances: pd.DataFrame, source: str, messages: list[str]) -> pd.DataFrame:
    zero = instances["end"] == instances["start"]
    if zero.any():
        _warn(messages, f"{source}: dropped {int(zero.sum())} zero-length segment(s) in {_examples(instances[zero])}")
        instances = instances[~zero]
    dup = instances.duplicated(subset=["video", "label", "start", "end"])
    if dup.any():
        _warn(messages, f"{source}: dropped {int(dup.sum())} duplicate segment(s) in {_examples(instances[dup])}")
        instances = instances[~dup]
    return instances


def _clip_to_durations(instances: pd.DataFrame, videos: pd.DataFrame, source: str,
                       messages: list[str]) -> pd.DataFrame:
    """Drop the segments that start after their video ends; clip the ends past it to its duration."""
    duration = instances["video"].map(videos.set_index("video")["duration"])
    outside = instances["start"] >= duration  # NaN duration compares False: unknown, kept
    if outside.any():
        _warn(messages, f"{source}: dropped {int(outside.sum())} segment(s) that start after the video ends, in "
                        f"{_examples(instances[outside])}")
        instances, duration = instances[~outside], duration[~outside]
    past = instances["end"] > duration
    if past.any():
        _warn(messages, f"{source}: clipped {int(past.sum())} segment end(s) to the video duration in "
                        f"{_examples(instances[past])}")
        instances = instances.assign(end=np.where(past, duration, instances["end"]))
    return instances


def load_labels(path: str | Path) -> list[str]:
    """Class names from a text file: one per line, optionally 'id name' (THUMOS Class_Index_Detection.txt)."""
    names = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if parts:
            names.append(parts[-1])
    return names
