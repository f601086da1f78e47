import json

import numpy as np
import pytest

from tal_pipeline.stages.data.sample_frames import sample_video
from tal_pipeline.storage.annotations import load_annotations
from tal_pipeline.synthetic.videos import CLASSES, COLOURS, generate


def _object_mask(frame, label):
    """Pixels close to the class colour."""
    return np.abs(frame.astype(np.float32) - COLOURS[label]).max(axis=-1) < 40


def _centroid_and_area(frame, label):
    mask = _object_mask(frame, label)
    if mask.sum() == 0:
        return None, 0
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()]), int(mask.sum())


def test_annotations_match_pixels(tiny_synthetic):
    ann = load_annotations(tiny_synthetic / "annotations.json")
    raw = json.loads((tiny_synthetic / "annotations.json").read_text())["database"]
    assert set(ann.labels) <= set(CLASSES)
    assert set(ann.videos["subset"]) == {"train", "test"}
    fps = 15.0
    for video in ann.videos["video"]:
        frames, info = sample_video(tiny_synthetic / f"{video}.mp4", fps, 64)
        assert info.duration == pytest.approx(ann.duration(video), abs=0.1)
        segments = ann.segments(video)
        assert len(segments) >= 1
        covered = np.zeros(len(frames), bool)
        for row, (warm, cool) in zip(segments.itertuples(), raw[video]["hard_negatives"]):
            label = CLASSES.index(row.label)
            at = lambda t: frames[min(len(frames) - 1, int(round(t * fps)))]  # noqa: E731
            # The object is on screen during the action and in its warm-up and cool-down (hard negatives).
            for t in (row.start + 0.2, (row.start + row.end) / 2, row.end - 0.2,
                      (warm[0] + warm[1]) / 2, (cool[0] + cool[1]) / 2):
                assert _object_mask(at(t), label).sum() > 20, (video, row.label, t)
            # It moves (or, for Pulse, changes size) during the action, and stays still in the warm-up.
            c0, a0 = _centroid_and_area(at(row.start + 0.05), label)
            change = max(
                np.linalg.norm(c - c0) + abs(a - a0) / 10
                for c, a in (_centroid_and_area(at(row.start + f * (row.end - row.start)), label)
                             for f in (0.125, 0.3, 0.6))
            )
            (w1, _), (w2, _) = (_centroid_and_area(at(warm[0] + 0.1), label),
                                _centroid_and_area(at(warm[1] - 0.1), label))
            assert change > 3 and np.linalg.norm(w1 - w2) < 2.5, (video, row.label, change)
            covered[int(warm[0] * fps): int(cool[1] * fps) + 1] = True
        # Outside actions and their warm-up/cool-down no class object is visible (easy negatives).
        background = np.nonzero(~covered)[0]
        for i in background[:: max(1, len(background) // 10)]:
            assert max(_object_mask(frames[i], k).sum() for k in range(len(CLASSES))) < 5, (video, i)


def test_deterministic_for_a_seed(tmp_path):
    a = generate(tmp_path / "a", videos=2, seed=7, duration=10, size=32)
    b = generate(tmp_path / "b", videos=2, seed=7, duration=10, size=32)
    c = generate(tmp_path / "c", videos=2, seed=8, duration=10, size=32)
    assert a.read_text() == b.read_text()
    assert a.read_text() != c.read_text()
    # The same content. Not asserted bit for bit: libx264's bitstream varied by a few bytes per packet in about
    # 1 run in 10-20 under CPU load here, even with one encoder thread and the colour conversion done in
    # numpy; the decoded frames then differ like two encodings of one video (measured: mean 2.6, max 39 grey levels).
    for i in range(2):
        fa, _ = sample_video(a.parent / f"synth_{i:04d}.mp4", fps=15.0, size=32)
        fb, _ = sample_video(b.parent / f"synth_{i:04d}.mp4", fps=15.0, size=32)
        assert fa.shape == fb.shape
        assert np.abs(fa.astype(np.float32) - fb.astype(np.float32)).mean() < 6.0


def test_thumos_like_shape(tmp_path):
    # Default-like parameters: ~20-40% of each video is action, one or two classes per video.
    ann_path = generate(tmp_path / "d", videos=6, seed=0, duration=30, size=32)
    ann = load_annotations(ann_path)
    for video in ann.videos["video"]:
        seg = ann.segments(video)
        cover = (seg["end"] - seg["start"]).sum() / ann.duration(video)
        assert 0.05 < cover < 0.6 and 1 <= seg["label"].nunique() <= 2


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="size"):
        generate(tmp_path, videos=2, size=33)
    with pytest.raises(ValueError, match="at least 2 videos"):
        generate(tmp_path, videos=1)
