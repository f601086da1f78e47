"""A small synthetic TAL dataset: real H.264 mp4 files plus ActivityNet-style annotations.

Each action class is a distinct motion of a class-coloured object over a textured background.
Every action instance is preceded by a warm-up and followed by a cool-down clip in which the same
object is on screen but does not perform the motion: in pixels it looks like the action, but it is
background (the BAPG paper's hard negatives, Fig. 1). Between instances the object is absent
(easy negatives). Durations and actions per video follow the shape of THUMOS14 (its annotations: median
video 150 s, ~30% of the time covered by actions, median action ~3 s, most videos one class),
scaled down by `duration` so the default run is cheap. Deterministic for a seed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ["Slide", "Bounce", "Orbit", "Pulse", "Zigzag"]
# One colour per class (RGB): the object is recognisable in warm-ups too, as an athlete is.
COLOURS = np.array([[230, 60, 50], [60, 200, 70], [70, 90, 235], [235, 200, 40], [200, 70, 220]], dtype=np.float32)
FILE_FPS = 15


@dataclass
class Instance:
    label: int
    start: float  # seconds
    end: float
    warmup: tuple[float, float]  # background clip before the action, object visible and still
    cooldown: tuple[float, float]


def _trajectory(label: int, phase: np.ndarray, size: int):
    """Object centre (x, y) and radius scale for an action of class `label` at phase in [0, 1]."""
    c, a = size / 2.0, size * 0.3
    if label == 0:  # Slide: left to right across the frame
        x, y, r = c - a + 2 * a * phase, np.full_like(phase, c), np.ones_like(phase)
    elif label == 1:  # Bounce: two vertical oscillations
        x, y, r = np.full_like(phase, c), c + a * np.sin(2 * np.pi * 2 * phase), np.ones_like(phase)
    elif label == 2:  # Orbit: one circle
        x, y, r = c + a * np.sin(2 * np.pi * phase), c - a * np.cos(2 * np.pi * phase), np.ones_like(phase)
    elif label == 3:  # Pulse: in place, radius swells three times
        x, y, r = np.full_like(phase, c), np.full_like(phase, c), 1.0 + 0.8 * np.sin(np.pi * 3 * phase) ** 2
    else:  # Zigzag: diagonal back and forth
        x = c - a + 2 * a * phase
        y = c + a * (2 * np.abs(((3 * phase) % 2) - 1) - 1)
        r = np.ones_like(phase)
    return x, y, r


def _layout(rng: np.random.Generator, duration: float, classes: list[int]) -> list[Instance]:
    """Place action instances with their warm-ups and cool-downs, ~30% of the video as action."""
    target_cover = rng.uniform(0.2, 0.4) * duration
    instances, t, covered = [], rng.uniform(1.0, 4.0), 0.0
    while covered < target_cover:
        length = float(np.clip(rng.lognormal(np.log(3.0), 0.35), 1.5, 7.0))
        warm, cool = rng.uniform(1.0, 2.0), rng.uniform(1.0, 2.0)
        if t + warm + length + cool + 0.5 > duration:
            break
        start = round(t + warm, 2)
        end = round(start + length, 2)
        label = int(classes[len(instances) % len(classes)] if rng.random() < 0.8 else rng.choice(classes))
        instances.append(Instance(label, start, end, (round(start - warm, 2), start), (end, round(end + cool, 2))))
        covered += length
        t = end + cool + rng.uniform(1.0, 5.0)
    return instances


def _render(instances: list[Instance], duration: float, size: int, rng: np.random.Generator):
    """Yield RGB frames (size, size, 3) uint8 at FILE_FPS."""
    coarse = rng.uniform(40, 160, size=(6, 6, 3)).astype(np.float32)
    # Smooth background texture: bilinear upsampling of a coarse random grid.
    grid = np.linspace(0, 5, size)
    i0 = np.floor(grid).astype(int).clip(0, 4)
    w = (grid - i0)[:, None]
    rows = coarse[i0] * (1 - w[..., None]) + coarse[i0 + 1] * w[..., None]
    background = rows[:, i0] * (1 - w.T[..., None]) + rows[:, i0 + 1] * w.T[..., None]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = size * 0.1
    n_frames = int(round(duration * FILE_FPS))
    for f in range(n_frames):
        t = f / FILE_FPS
        frame = background + rng.normal(0, 3.0, size=background.shape).astype(np.float32)
        for inst in instances:
            if inst.warmup[0] <= t < inst.cooldown[1]:
                if t < inst.start:  # warm-up: still at the start pose, small jitter
                    phase = np.array([0.0])
                elif t < inst.end:
                    phase = np.array([(t - inst.start) / (inst.end - inst.start)])
                else:  # cool-down: still at the end pose
                    phase = np.array([1.0])
                x, y, r = (v[0] for v in _trajectory(inst.label, phase, size))
                if not inst.start <= t < inst.end:
                    x, y = x + rng.normal(0, 0.5), y + rng.normal(0, 0.5)
                dist = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
                alpha = np.clip(radius * r - dist + 0.5, 0.0, 1.0)[..., None]
                frame = frame * (1 - alpha) + COLOURS[inst.label] * alpha
        yield np.clip(frame, 0, 255).astype(np.uint8)


def _write_mp4(path: Path, frames, size: int) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FILE_FPS)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        # One encoder thread: the same bitstream for a seed (under heavy CPU load libx264 still varied by a
        # few bytes per packet now and then; the decoded content does not change: tests/test_synthetic.py).
        stream.options = {"crf": "20", "preset": "veryfast", "threads": "1"}
        stream.codec_context.thread_count = 1
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def generate(out: str | Path, videos: int = 16, seed: int = 0, duration: float = 40.0, size: int = 128,
             test_fraction: float = 0.375) -> Path:
    """Write `videos` mp4 files and `annotations.json` into `out`; return the annotation path."""
    if videos < 2:
        raise ValueError("the synthetic dataset needs at least 2 videos (train and test)")
    if size < 32 or size % 2:
        raise ValueError(f"--size must be an even number >= 32, got {size}")
    if duration < 10:
        raise ValueError(f"--duration must be at least 10 s, got {duration}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_test = max(1, int(round(videos * test_fraction)))
    database = {}
    for v in range(videos):
        video = f"synth_{v:04d}"
        vrng = np.random.default_rng([seed, v])
        # THUMOS14 video durations are roughly log-normal (median 150 s); scale to `duration`.
        length = float(np.clip(vrng.lognormal(np.log(duration), 0.35), 0.6 * duration, 2.0 * duration))
        length = round(length * FILE_FPS) / FILE_FPS
        n_classes = 1 if vrng.random() < 0.7 else 2
        # Cycle classes over videos so every class appears in the training subset.
        first = (v + seed) % len(CLASSES)
        classes = [first] + ([int((first + 1 + vrng.integers(0, len(CLASSES) - 1)) % len(CLASSES))]
                             if n_classes == 2 else [])
        instances = _layout(vrng, length, classes)
        _write_mp4(out / f"{video}.mp4", _render(instances, length, size, vrng), size)
        database[video] = {
            "subset": "test" if v >= videos - n_test else "train",
            "duration": length,
            "fps": float(FILE_FPS),
            "annotations": [{"segment": [i.start, i.end], "label": CLASSES[i.label]} for i in instances],
            # Not read by the pipeline: where the hard negatives are, for tests and plots.
            "hard_negatives": [[list(i.warmup), list(i.cooldown)] for i in instances],
        }
    annotations = out / "annotations.json"
    payload = {"version": "synthetic-1", "taxonomy": CLASSES, "seed": seed, "database": database}
    annotations.write_text(json.dumps(payload, indent=1))
    return annotations
