"""Video-level class scores: the common JSON layout, reading an external file, and the fusion with class-agnostic
detections (pure functions).

Layout (that of the CUHK ActivityNet classifier file that ActionFormer and TriDet read, e.g.
cuhk_val_simp_share.json):

    {"results": {video_id: [score of class 0, score of class 1, ...]}, "class": [name of class 0, ...]}

one list of len(class) numbers per video, in the order of "class". Video ids are those of the annotations; an
id absent from "results" is also looked up as "v_<id>" (ActivityNet's YouTube file names). ClassifyVideos writes
its own scores in the same layout (video_classes.json), so either source feeds the same fusion.

Fusion (ActionFormer's): each class-agnostic detection (segment, score s) becomes one detection per top-k class of
its video (k = 2), with score sqrt(class score x s).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def scores_payload(scores: Mapping[str, np.ndarray], classes: list[str], **extra) -> dict:
    """The JSON layout above for {video: (K,) scores} (plus any extra top-level keys)."""
    return {"results": {v: [float(x) for x in np.asarray(s)] for v, s in sorted(scores.items())},
            "class": list(classes), **extra}


def read_video_scores(path: str | Path, videos: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The scores of `videos` in a file of the layout above: ({video: (K,) float64}, class names).

    ValueError naming the file (and the video) for: unreadable JSON, no "results" or "class", a class list with
    duplicates, a video absent from "results" (also as v_<id>), a score list of the wrong length or with a
    non-finite or non-numeric entry.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: video scores file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file of video scores: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(f'{path}: expected {{"results": {{video: [scores]}}, "class": [names]}}; there is no '
                         '"results" mapping')
    classes = data.get("class")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ValueError(f'{path}: no "class" list naming the score entries (the CUHK layout has one; its order is '
                         "that of every video's scores)")
    if len(set(classes)) != len(classes):
        raise ValueError(f'{path}: "class" lists a name twice')
    results = data["results"]
    out = {}
    for video in videos:
        key = video if video in results else f"v_{video}" if f"v_{video}" in results else None
        if key is None:
            raise ValueError(f"{path}: no scores for video {video!r} (nor 'v_{video}'); the file has "
                             f"{len(results)} videos")
        row = results[key]
        if not isinstance(row, list) or len(row) != len(classes):
            got = f"{len(row)} scores" if isinstance(row, list) else type(row).__name__
            raise ValueError(f"{path}: video {video!r} has {got}, expected {len(classes)} (one per entry of "
                             '"class")')
        try:
            arr = np.array([float(x) for x in row], np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: video {video!r}: a score is not a number") from None
        if not np.isfinite(arr).all():
            raise ValueError(f"{path}: video {video!r}: scores contain NaN or inf")
        out[video] = arr
    return out, list(classes)


def fuse_video_classes(detections: Mapping[str, list[dict]], scores: Mapping[str, np.ndarray], classes: list[str],
                       topk: int = 2, source: str = "video scores") -> dict[str, list[dict]]:
    """Class-agnostic detections {video: [{"segment", "label", "score"}]} -> for each video, every detection once
    per top-`topk` class of the video's scores, label = that class, score = sqrt(class score x detection score);
    best first (ties: the better class first, then the detection order)."""
    if topk < 1:
        raise ValueError(f"fuse_video_classes: topk must be >= 1, got {topk}")
    out = {}
    for video, dets in detections.items():
        if video not in scores:
            raise ValueError(f"{source}: no scores for video {video!r}")
        s = np.asarray(scores[video], np.float64)
        if s.shape != (len(classes),):
            raise ValueError(f"{source}: video {video!r} has {s.shape[0] if s.ndim else 0} scores, expected "
                             f"{len(classes)}")
        top = np.argsort(-s, kind="stable")[:topk]
        fused = [{"segment": list(d["segment"]), "label": classes[int(c)],
                  "score": math.sqrt(max(float(s[c]), 0.0) * max(float(d["score"]), 0.0))}
                 for c in top for d in dets]
        out[video] = sorted(fused, key=lambda d: -d["score"])  # stable: class order, then detection order
    return out
