"""Where the project keeps things that outlive a run (weights, Numba cache)."""
from __future__ import annotations

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
    if not isinstance(video_id, str) or not VIDEO_ID_PATTERN.fullmatch(video_id) or video_id in {".", ".."} or ".." in video_id:
        raise ValueError(
            f"video id {video_id!r}{where} is not file-name safe: ids must match [A-Za-z0-9_.-]+ and not contain '..'"
        )
    return video_id
