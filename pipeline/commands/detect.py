"""`tal-pipeline detect VIDEO_OR_DIR --checkpoint CKPT`: detections on raw videos with a TrainDetector checkpoint.

The input of the detector is rebuilt from the video as the pipeline built it (stages/detectors/inference.py: frames, I3D
features and, for a +BAPG detector, the encoder, similarity matrix, TSC and boundary-aware features, with the
parameters recorded in the checkpoint). Output: ActivityNet results JSON
    {"version", "results": {video: [{"segment": [s, e], "label", "score"}]}, "external_data": {...},
     "failures": {video: reason}}
to --out (atomically) or stdout; progress goes to stderr.

Exit status: 0 when the results were written; for a folder, a video that fails (not a video, truncated, too
short, unsafe id...) is reported on stderr and under "failures" and the others go on. 1 when every video of a
folder failed (the JSON is still written). 2 for a bad invocation: missing file or folder, no video in the
folder, a checkpoint that is unreadable, lacks keys or was trained on imported features, or a single video
that cannot be processed.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HELP = ("detections on a raw video (or every video of a folder) with a TrainDetector checkpoint; ActivityNet "
        "results JSON")


def video_files(target: Path) -> list[Path]:
    """The video itself, or every file of the folder (not recursive) with a common video extension, sorted."""
    from tal_pipeline.stages.data.sample_frames import VIDEO_EXTENSIONS

    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not files:
            raise ValueError(f"{target}: no video file in the folder (extensions {', '.join(VIDEO_EXTENSIONS)})")
        return files
    if not target.exists():
        raise FileNotFoundError(f"{target}: no such video file or folder")
    return [target]


def _detect_one(path: Path, target: Path, taken, checkpoint, args, single: bool) -> tuple[tuple | None, str]:
    """((video, detections, info), "") of one file, or (None, reason) when it failed in a folder run (printed;
    the caller records it). A single video's bad input raises ValueError / FileNotFoundError."""
    from tal_pipeline.stages.detectors.inference import detect_video

    try:
        if path.stem in taken:
            raise ValueError(f"{path}: video id {path.stem!r} is already taken by another file of {target}")
        return detect_video(path, checkpoint, device=args.device, max_dets=args.max_dets,
                            nms_sigma=args.nms_sigma, voting_thresh=args.voting_thresh), ""
    except (ValueError, OSError, RuntimeError) as exc:
        reason = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        if single:
            if isinstance(exc, (ValueError, FileNotFoundError)):
                raise
            if isinstance(exc, OSError):
                raise ValueError(reason) from None
            raise  # a RuntimeError on the one video asked for is not bad input: show the traceback
        print(f"tal-pipeline detect: {path}: failed: {exc}", file=sys.stderr)
        return None, reason


def _plot(video: str, dets: list[dict], info: dict, checkpoint, plot_stem: str) -> None:
    """<plot_stem>_<video>.png: the top-10 detections on a time line."""
    from tal_pipeline.stages.detectors.detection_plot import plot_detections

    png = Path(f"{plot_stem}_{video}.png")
    png.parent.mkdir(parents=True, exist_ok=True)
    bapg = " + BAPG" if checkpoint["config"]["bapg"] else ""
    plot_detections(png, video, dets, info["duration"], top=10,
                    title=f"{video}: top-10 {checkpoint['config']['name']}{bapg} detections (opacity = score)")
    print(f"tal-pipeline detect: wrote {png}", file=sys.stderr)


def _payload(results: dict, failures: dict, videos: dict, checkpoint, args) -> dict:
    """The ActivityNet results JSON, with what the checkpoint and the post-processing were."""
    from tal_pipeline.stages.detectors.checkpoint import checkpoint_file, checkpoint_info

    return {
        "version": "tal-pipeline",
        "results": results,
        "external_data": {"used": True, "details": "Kinetics-400 I3D RGB features (i3d-rgb-k400)",
                          **checkpoint_info(checkpoint, checkpoint_file(args.checkpoint)),
                          "max_dets": args.max_dets, "nms_sigma": args.nms_sigma,
                          "voting_thresh": args.voting_thresh, "videos": videos},
        "failures": failures,
    }


def handle(args) -> int:
    from tal_pipeline.stages.detectors.checkpoint import load_checkpoint
    from tal_pipeline.storage.atomic import atomic_write

    if args.max_dets < 1:
        raise ValueError(f"--max-dets must be >= 1, got {args.max_dets}")
    target = Path(args.video).expanduser()
    files = video_files(target)  # before loading anything: a wrong path fails at once
    checkpoint = load_checkpoint(args.checkpoint)
    out = Path(args.out).expanduser() if args.out else None
    plot_stem = (out.with_suffix("") if out else Path("detections")).as_posix()
    results: dict[str, list] = {}
    failures: dict[str, str] = {}
    videos: dict[str, dict] = {}
    for path in files:
        start = time.perf_counter()
        done, reason = _detect_one(path, target, results.keys() | failures.keys(), checkpoint, args,
                                   single=not target.is_dir())
        if done is None:
            failures[path.stem if path.stem not in results and path.stem not in failures else path.name] = reason
            continue
        video, dets, info = done
        results[video], videos[video] = dets, info
        print(f"tal-pipeline detect: {video}: {len(dets)} detections, {info['duration']:.1f} s of video, "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
        if args.plot:
            _plot(video, dets, info, checkpoint, plot_stem)
    text = json.dumps(_payload(results, failures, videos, checkpoint, args))
    if out:
        atomic_write(out, text)
        print(f"tal-pipeline detect: wrote {out} ({len(results)} video(s), {len(failures)} failed)", file=sys.stderr)
    else:
        print(text)
    return 1 if failures and not results else 0


def add_arguments(p) -> None:
    p.add_argument("video", help="a video file, or a folder: every file with a common video extension in it")
    p.add_argument("--checkpoint", required=True,
                   help="TrainDetector artifact folder (runs/detector-<hash>/) or its checkpoint.pt")
    p.add_argument("--out", default=None, help="results JSON file (default: print to stdout)")
    p.add_argument("--plot", action="store_true",
                   help="also write <out stem>_<video>.png (default stem: ./detections): the top-10 detections "
                        "on a time line, opacity = score")
    p.add_argument("--max-dets", type=int, default=200,
                   help="keep at most this many detections per video (default 200; the anet preset's Detect: 100)")
    p.add_argument("--nms-sigma", type=float, default=None,
                   help="Soft-NMS sigma (default: the detector's own; the anet preset's Detect: 0.75)")
    p.add_argument("--voting-thresh", type=float, default=0.0,
                   help="segment voting tIoU, 0: off (default 0; the anet preset's Detect: 0.9)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto: CUDA when present)")
