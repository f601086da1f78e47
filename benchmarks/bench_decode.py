"""SampleFrames throughput against a bare PyAV decode loop on the same file, as a ratio.

    python benchmarks/bench_decode.py [--video FILE] [--fps 8] [--size 96] [--repeat 3]

The bare loop decodes every frame and converts each to RGB at its native size (what a naive
sampler does); SampleFrames decodes every frame too but converts only the sampled ones, resized.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av

from tal_pipeline.stages.data.sample_frames import sample_video

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "v_GGSY1Qvo990.mp4"


def bare_decode(path: Path) -> int:
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=None)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    video = args.video
    if video is None:
        if DEFAULT.is_file():
            video = DEFAULT
        else:  # no ../shared: a synthetic video instead
            from tal_pipeline.synthetic.videos import generate

            folder = Path(tempfile.mkdtemp())
            generate(folder, videos=2, seed=0, duration=30, size=256)
            video = folder / "synth_0000.mp4"
    n_frames = bare_decode(video)
    bare = best_of(lambda: bare_decode(video), args.repeat)
    frames, info = sample_video(video, args.fps, args.size)
    sampled = best_of(lambda: sample_video(video, args.fps, args.size), args.repeat)
    print(f"video: {video.name}  {info.width}x{info.height}  {n_frames} frames  {info.duration:.2f} s  "
          f"source fps {info.source_fps:.3f}")
    print(f"bare PyAV decode + rgb24 of every frame : {bare * 1e3:8.1f} ms  {n_frames / bare:8.1f} frames/s  "
          f"{info.duration / bare:7.1f} video-s/s")
    print(f"SampleFrames at {args.fps:g} fps, {args.size}px         : {sampled * 1e3:8.1f} ms  "
          f"{n_frames / sampled:8.1f} frames/s  {info.duration / sampled:7.1f} video-s/s  ({frames.shape[0]} samples)")
    print(f"ratio SampleFrames / bare decode throughput: {bare / sampled:.2f}x")


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_decode", main)  # --no-readme: print only
