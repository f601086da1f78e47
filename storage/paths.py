"""Where the project keeps things that outlive a run (weights, Numba cache), and safe names and files."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

VIDEO_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


def cache_dir() -> Path:
    """User cache folder: $TAL_PIPELINE_CACHE, else $XDG_CACHE_HOME/tal-pipeline, else ~/.cache/tal-pipeline."""
    if os.environ.get("TAL_PIPELINE_CACHE"):
        return Path(os.environ["TAL_PIPELINE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tal-pipeline"


def check_video_id(video_id: str, source: str = "") -> str:
    """Refuse ids that are not file-name safe (path separators, '..', spaces, control characters, empty).

    fullmatch, not match: `$` in match() also accepts a trailing newline.
    """
    where = f" in {source}" if source else ""
    if (not isinstance(video_id, str) or not VIDEO_ID_PATTERN.fullmatch(video_id)
            or video_id in {".", ".."} or ".." in video_id):
        raise ValueError(
            f"video id {video_id!r}{where} is not file-name safe: ids must match [A-Za-z0-9_.-]+ and not contain '..'"
        )
    return video_id


def read_json_mapping(path: str | Path, what: str, key: str) -> dict:
    """A JSON file holding an object with a `key` mapping; errors name the file (`what`: "annotation file"...)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty (0 bytes), not valid JSON")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise ValueError(f"{what} {path}: expected an object with a {key!r} mapping of videos")
    return data
