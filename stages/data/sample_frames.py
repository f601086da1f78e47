"""SampleFrames: decode a video with PyAV and sample frames at a target fps by presentation time.

Sampling by timestamp, not frame index (docs/method.md §1): sample k is the frame on screen at
t_k = k / fps, i.e. the last frame whose presentation time is <= t_k. Timestamps may start late,
arrive out of order or be variable-rate; the video's real fps and frame count are recorded.
Frames are resized so the short side is `size` (bilinear, swscale) and centre-cropped to size x size.

Bad files fail with a ValueError naming the video, the file and the problem (empty, not a video,
no video stream, undecodable, truncated); the stage lists them in its failure report and keeps the
other videos. A truncated file fails as a whole, also when its first part decodes (a truncated
mkv, or an mp4 with its index at the front): when the decoded frames end well before the duration
the file declares (by more than max(1 s, 2%)), nothing of the video is written. A silently shorter
video would leave annotated actions without frames; `--SampleFrames-skip-bad-videos` continues
without such videos instead.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")


@dataclass
class VideoInfo:
    source_fps: float
    source_frames: int  # frames actually decoded
    first_timestamp: float  # seconds, presentation time of the first decoded frame
    duration: float  # seconds: last frame's time + one frame
    width: int
    height: int
    out_of_order: int = 0  # frames whose timestamp went backwards (reordered before sampling)
    timestamps: list[float] = field(default_factory=list)  # sample times t_k


def find_video(folder: str | Path, video: str) -> Path:
    """The file `<video>.<ext>` in folder, for any common video extension."""
    folder = Path(folder)
    for ext in VIDEO_EXTENSIONS:
        for candidate in (folder / f"{video}{ext}", folder / f"{video}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"video {video!r}: no file {video}.<ext> in {folder} "
                            f"(extensions {', '.join(VIDEO_EXTENSIONS)})")


def _resize_crop(frame, size: int) -> np.ndarray:
    """Short side -> size (swscale bilinear), then centre crop to (size, size, 3) uint8."""
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = frame.reformat(width=new_w, height=new_h, format="rgb24", interpolation="BILINEAR").to_ndarray()
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return rgb[top : top + size, left : left + size]


def _decoded_frames(path: Path, video: str) -> Iterator[tuple[float, object, object]]:
    """(timestamp seconds, frame, stream) in decode order; clear errors for bad files."""
    import av

    if path.stat().st_size == 0:
        raise ValueError(f"video {video!r}: file {path} is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise ValueError(
            f"video {video!r}: {path} is not a readable video file: truncated, corrupt or not a video ({exc})"
        ) from None
    with container:
        if not container.streams.video:
            raise ValueError(f"video {video!r}: {path} has no video stream (audio-only or not a video)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = float(stream.time_base) if stream.time_base else None
        index, last = 0, -math.inf
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and time_base is not None:
                    t = frame.pts * time_base
                elif frame.time is not None:
                    t = float(frame.time)
                else:  # no timestamps at all: fall back to the nominal rate
                    rate = float(stream.average_rate or stream.guessed_rate or 25)
                    t = index / rate
                index += 1
                last = max(last, t)
                yield t, frame, stream
        except av.error.FFmpegError as exc:
            if index == 0:
                raise ValueError(f"video {video!r}: {path} could not be decoded: "
                                 f"truncated or corrupt ({exc})") from None
            raise ValueError(f"video {video!r}: {path} is truncated or corrupt after frame {index} ({exc})") from None
        if index == 0:
            raise ValueError(f"video {video!r}: {path} has a video stream but no decodable frame")
        _check_not_truncated(container, stream, path, video, index, last)


def _parse_clock(text: str) -> float | None:
    """'HH:MM:SS.fraction' (Matroska's per-track DURATION tag) -> seconds."""
    try:
        h, m, sec = text.strip().split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except (AttributeError, ValueError):
        return None


def declared_duration(container, stream) -> float | None:
    """The video's length in seconds as the file's headers state it (None when they do not).

    The video stream's own duration, else Matroska's per-track DURATION tag, else the container's
    duration when no other audio/video stream could make it longer. Formats disagree on whether this
    counts from 0 or from the first timestamp; a video whose timestamps start at s >= 0 ends at or
    after it either way, so it is a lower bound of the end time.
    """
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = _parse_clock(stream.metadata.get("DURATION", "")) if stream.metadata else None
    if tag:
        return tag
    others = [s for s in container.streams if s.index != stream.index and s.type in ("audio", "video")]
    if container.duration and not others:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _check_not_truncated(container, stream, path: Path, video: str, count: int, last: float) -> None:
    """Fail when the decoded frames stop well before the duration the file declares (a cut-off file)."""
    declared = declared_duration(container, stream)
    if not declared or not math.isfinite(last):
        return
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    decoded_end = last + (1.0 / rate if rate > 0 else 0.0)
    if declared - decoded_end > max(1.0, 0.02 * declared):
        frames = f" of the {stream.frames} it declares" if stream.frames else ""
        raise ValueError(
            f"video {video!r}: {path} is truncated: its frames end at {decoded_end:.2f} s ({count} frames{frames}) "
            f"but the file declares {declared:.2f} s; the rest is missing or unreadable (re-download or re-encode it)"
        )


class FrameSampler:
    """Streams samples (t_k, frame) of one video in bounded memory.

    Decoded frames pass through a small reorder buffer (out-of-order timestamps, e.g. B-frames in
    AVI); only frames that are actually sampled are converted to RGB. After iteration `info` holds
    the video's real fps, frame count and duration.
    """

    REORDER = 16

    def __init__(self, path: str | Path, fps: float, size: int, video: str | None = None, time_origin: str = "zero"):
        if fps <= 0:
            raise ValueError(f"target fps must be positive, got {fps}")
        if time_origin not in ("zero", "first"):
            raise ValueError(f"time_origin must be 'zero' or 'first', not {time_origin!r}")
        self.path, self.fps, self.size = Path(path), float(fps), int(size)
        self.video = video or self.path.stem
        self.time_origin = time_origin
        self.info: VideoInfo | None = None

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        import heapq

        heap: list = []  # (time, arrival, frame): a min-heap restores presentation order
        count, out_of_order, last_in = 0, 0, -math.inf
        source_fps, width, height = math.nan, 0, 0
        timestamps: list[float] = []
        state = {"k": 0, "origin": None, "first": None, "prev": None}

        def emit_until(t_limit: float, entry: list):
            # Every sample time t_k < t_limit shows `entry` (the frame on screen at t_k).
            while state["origin"] + state["k"] / self.fps < t_limit - 1e-9:
                if entry[1] is not None:  # convert once, only if sampled
                    entry[2] = _resize_crop(entry[1], self.size)
                    entry[1] = None
                t_k = state["origin"] + state["k"] / self.fps
                timestamps.append(t_k)
                yield t_k, entry[2]
                state["k"] += 1

        def advance(t_next: float, frame):
            if state["first"] is None:
                state["first"] = t_next
                state["origin"] = 0.0 if self.time_origin == "zero" else t_next
                state["prev"] = [t_next, frame, None]  # samples before the first frame repeat it
            yield from emit_until(t_next, state["prev"])
            state["prev"] = [t_next, frame, None]

        for t, frame, stream in _decoded_frames(self.path, self.video):
            count += 1
            if t < last_in:
                out_of_order += 1
            last_in = t
            width, height = frame.width, frame.height
            rate = stream.average_rate or stream.guessed_rate
            source_fps = float(rate) if rate else math.nan
            heapq.heappush(heap, (t, count, frame))
            if len(heap) > self.REORDER:
                t_next, _, f_next = heapq.heappop(heap)
                yield from advance(t_next, f_next)
        while heap:
            t_next, _, f_next = heapq.heappop(heap)
            yield from advance(t_next, f_next)
        # The last frame stays on screen for one frame period.
        period = 1.0 / source_fps if source_fps == source_fps and source_fps > 0 else 1.0 / self.fps
        end = state["prev"][0] + period
        yield from emit_until(end, state["prev"])
        self.info = VideoInfo(
            source_fps=source_fps,
            source_frames=count,
            first_timestamp=float(state["first"]),
            duration=float(end),
            width=width,
            height=height,
            out_of_order=out_of_order,
            timestamps=timestamps,
        )


def sample_video(path: str | Path, fps: float, size: int, video: str | None = None, time_origin: str = "zero"):
    """Decode `path` and return (frames uint8 (T, size, size, 3), VideoInfo), all in memory."""
    sampler = FrameSampler(path, fps, size, video, time_origin)
    frames = [image for _, image in sampler]
    stacked = np.stack(frames) if frames else np.zeros((0, size, size, 3), np.uint8)
    return stacked, sampler.info


def sample_frames_to_store(video: str, *, videos_dir: str, store_path: str, fps: float, size: int,
                           chunk_len: int = 64) -> None:
    """Per-video worker of the SampleFrames stage (module-level: Dask may pickle it).

    Frames are appended to the Zarr array chunk by chunk, so memory stays at one chunk.
    """
    from tal_pipeline.storage.zarr_store import ArtifactStore

    path = find_video(videos_dir, video)
    sampler = FrameSampler(path, fps, size, video)
    store = ArtifactStore(store_path)
    with store.video_array(video, (0, size, size, 3), np.uint8, (chunk_len, size, size, 3),
                           ["time", "y", "x", "rgb"]) as array:
        block, written = [], 0
        for _, image in sampler:
            block.append(image)
            if len(block) == chunk_len:
                array.resize((written + chunk_len, size, size, 3))
                array[written : written + chunk_len] = np.stack(block)
                written, block = written + chunk_len, []
        if block:
            array.resize((written + len(block), size, size, 3))
            array[written : written + len(block)] = np.stack(block)
            written += len(block)
        info = sampler.info
        array.attrs.update(
            {
                "fps": fps,
                "source_fps": info.source_fps,
                "source_frames": info.source_frames,
                "duration": info.duration,
                "first_timestamp": info.first_timestamp,
                "out_of_order_timestamps": info.out_of_order,
                "source_width": info.width,
                "source_height": info.height,
                "timestamps": [round(t, 6) for t in info.timestamps],
                "source_file": path.name,
            }
        )
