"""Check every chunk and file of a workdir's artifacts (or of one artifact), list what is damaged, and repair it.

A store's damage is per video: repairing removes just those videos' arrays and the store's completeness flag, so
the stage reruns and per-video resume recomputes only them. A folder artifact (checkpoint, JSON) is emptied, DONE
first, and kept as a folder so its task reruns. Either way the artifact is "taken apart": a rerun of any task
downstream of it reaches and recomputes it, and keeps what is intact (pipeline.base.StageTask.complete).
Artifacts written before checksums are listed as "no checksums", not as damaged.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tal_pipeline.storage.integrity import (
    ArtifactDamaged,
    array_metadata,
    damaged_chunks,
    decode_problem,
    has_checksums,
)
from tal_pipeline.storage.manifest import damaged_files, sha256_file
from tal_pipeline.storage.zarr_store import COMPLETE_FLAG, ArtifactStore

REPAIR_NOTE = "REPAIRED"


def _item(artifact: Path, reason: str, video=None, chunk=None, file=None) -> dict:
    return {"artifact": str(artifact), "video": video, "chunk": chunk, "file": file, "reason": reason}


def is_store(path: Path) -> bool:
    return path.is_dir() and path.suffix == ".zarr" and (path / "zarr.json").is_file()


def is_folder_artifact(path: Path) -> bool:
    return path.is_dir() and (path / "DONE").is_file()


def find_artifacts(target: str | Path) -> list[Path]:
    """The artifact `target` is, or the artifacts directly inside the workdir `target`."""
    target = Path(target)
    if not target.is_dir():
        raise FileNotFoundError(f"{target} is neither a workdir nor an artifact folder or store")
    if is_store(target) or is_folder_artifact(target):
        return [target]
    return [p for p in sorted(target.iterdir()) if is_store(p) or is_folder_artifact(p)]


def _metadata_damage(path: Path) -> list[dict]:
    """The group's zarr.json and the completeness flag must parse."""
    damaged = []
    for name in ("zarr.json", COMPLETE_FLAG):
        try:
            if (path / name).is_file():
                json.loads((path / name).read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            damaged.append(_item(path, f"unreadable JSON ({exc})", file=name))
    return damaged


def _flag_damage(store: ArtifactStore) -> list[dict]:
    """Videos the flag lists that are gone, and the store's own files (recall tables) that differ from its sha256."""
    if not store.is_complete():
        return []
    flag = store.completion()
    damaged = [_item(store.path, "listed as done in .complete, but its array is gone", video=video)
               for video in sorted(set(flag.get("videos", [])) - store.done_videos())]
    for name, digest in sorted(flag.get("files", {}).items()):
        file = store.path / name
        if not file.is_file():
            damaged.append(_item(store.path, "missing file", file=name))
        elif sha256_file(file) != digest:
            damaged.append(_item(store.path, "sha256 mismatch", file=name))
    return damaged


def check_store(path: Path) -> tuple[list[dict], list[dict]]:
    """(damaged, unverified) items of a Zarr store: every chunk of every finished video is read."""
    damaged = _metadata_damage(path)
    if damaged:
        return damaged, []
    store = ArtifactStore(path)
    damaged, unverified = _flag_damage(store), []
    for video in store.videos():
        try:
            meta = array_metadata(path / video)
            problems = damaged_chunks(path / video)
        except ArtifactDamaged as exc:
            damaged += [_item(path, reason, video=video, file=name) for name, reason in exc.problems]
            continue
        damaged += [_item(path, reason, video=video, chunk=key) for key, reason in problems]
        if not has_checksums(meta):
            problem = decode_problem(path / video)
            if problem:
                damaged.append(_item(path, problem, video=video))
            else:
                unverified.append(_item(path, "no checksums", video=video))
    return damaged, unverified


def check_folder(path: Path) -> tuple[list[dict], list[dict]]:
    """(damaged, unverified) items of a folder artifact, from its SHA256SUMS."""
    problems = damaged_files(path)
    if problems is None:
        return [], [_item(path, "no checksums")]
    return [_item(path, reason, file=name) for name, reason in problems], []


def verify(target: str | Path) -> dict:
    """{"checked": [artifact paths], "damaged": [items], "unverified": [items]}; an item names the artifact and
    the video and chunk (stores) or the file (folder artifacts)."""
    report = {"checked": [], "damaged": [], "unverified": []}
    for artifact in find_artifacts(target):
        damaged, unverified = check_store(artifact) if is_store(artifact) else check_folder(artifact)
        report["checked"].append(str(artifact))
        report["damaged"] += damaged
        report["unverified"] += unverified
    return report


def repair(damaged: list[dict]) -> list[str]:
    """Remove what the damaged items name: the videos of a store (and its flag), or the folder artifact's files.

    A store whose own metadata is damaged is removed whole. Returns one line per removal.
    """
    done = []
    by_artifact: dict[str, list[dict]] = {}
    for item in damaged:
        by_artifact.setdefault(item["artifact"], []).append(item)
    for artifact, items in sorted(by_artifact.items()):
        path = Path(artifact)
        videos = sorted({i["video"] for i in items if i["video"] is not None})
        if is_store(path) and not any(i["video"] is None and i["file"] == "zarr.json" for i in items):
            # damaged videos are recomputed; the store's own files (recall tables) by its step before the flag
            ArtifactStore(path).invalidate(videos)
            done.append(f"{path}: removed the completeness flag" + (f" and video(s) {', '.join(videos)}"
                                                                     if videos else ""))
        elif is_store(path):
            ArtifactStore(path).remove()
            done.append(f"{path}: removed the store (its own metadata is damaged)")
        else:
            take_apart_folder(path, items)
            done.append(f"{path}: removed the artifact's files (the folder stays, without DONE, so a rerun "
                        "recomputes it)")
    return done


def take_apart_folder(path: Path, items: list[dict]) -> None:
    """Empty a folder artifact but keep the folder with a REPAIRED note: present without DONE, it tells the
    pipeline to recompute it (pipeline.base.StageTask.complete), where an absent one is left absent."""
    (path / "DONE").unlink(missing_ok=True)  # first: a half-emptied folder never looks complete
    for entry in path.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    (path / REPAIR_NOTE).write_text("removed by `tal-pipeline verify --repair`:\n"
                                    + "".join(f"{format_item(i)}\n" for i in items))


def format_item(item: dict) -> str:
    where = [Path(item["artifact"]).name]
    where += [f"video {item['video']}"] if item["video"] is not None else []
    where += [f"chunk {item['chunk']}"] if item["chunk"] is not None else []
    where += [f"file {item['file']}"] if item["file"] is not None else []
    return f"{' '.join(where)}: {item['reason']}"
