"""Detector stage functions: seconds <-> steps, crops, schedules, EMA, train -> checkpoint -> detect."""
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tal_pipeline.stages.data.timegrid import TimeGrid, seconds_to_feature
from tal_pipeline.stages.detectors.data import (
    VideoItem,
    build_training_set,
    epoch_batches,
    random_crop,
    window_starts,
)
from tal_pipeline.stages.detectors.detection import detect
from tal_pipeline.stages.detectors.training import train_detector
from tal_pipeline.stages.runtime import ema_decay_at, lr_at, resolve_device
from tests.synthetic_features import synthetic_feature_dataset

GRID = TimeGrid(fps=10.0, window=4, stride=2)


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # deterministic, and fair to other tests


def test_training_set_uses_timegrid():
    feats = {"a": np.zeros((30, 3), np.float32), "b": np.zeros((10, 3), np.float32)}
    ann = pd.DataFrame({"video": ["a", "zzz"], "label": ["jump", "run"], "start": [1.0, 0.0], "end": [2.5, 1.0]})
    items = build_training_set(feats, ann, ["run", "jump"], GRID)
    a, b = items
    assert a.video == "a" and a.labels.tolist() == [1]
    expect = [seconds_to_feature(1.0, 10, 4, 2), seconds_to_feature(2.5, 10, 4, 2)]  # (10 - 2)/2 = 4, 11.5
    assert np.allclose(a.segments[0], expect) and np.allclose(expect, [4.0, 11.5])
    assert b.segments.shape == (0, 2)  # no annotations: all background


def test_training_set_errors_name_the_video():
    feats = {"vid1": np.zeros((30, 3), np.float32)}
    with pytest.raises(ValueError, match="vid1.*unknown_label|vid1.*not in the class list"):
        build_training_set(feats, pd.DataFrame({"video": ["vid1"], "label": ["unknown_label"], "start": [1.0],
                                                "end": [2.0]}), ["run"], GRID)
    with pytest.raises(ValueError, match="vid1.*end <= start"):
        build_training_set(feats, pd.DataFrame({"video": ["vid1"], "label": ["run"], "start": [2.0], "end": [2.0]}),
                           ["run"], GRID)
    bad = {"vid2": np.full((5, 3), np.nan, np.float32)}
    with pytest.raises(ValueError, match="vid2.*NaN"):
        build_training_set(bad, pd.DataFrame(columns=["video", "label", "start", "end"]), ["run"], GRID)


def test_random_crop_clips_and_shifts_segments():
    item = VideoItem("v", np.arange(100, dtype=np.float32)[:, None], np.array([[10.0, 20.0], [60.0, 90.0]], np.float32),
                     np.array([0, 1]))
    rng = np.random.default_rng(0)
    for _ in range(20):
        f, segs, labs = random_crop(item, 32, rng)
        s0 = int(f[0, 0])
        assert f.shape == (32, 1) and np.array_equal(f[:, 0], np.arange(s0, s0 + 32))
        assert len(segs) >= 1  # prefers crops with an action
        assert np.all(segs[:, 0] >= -0.5) and np.all(segs[:, 1] <= 31.5)
        for seg, lab in zip(segs, labs):
            orig = item.segments[lab]
            assert np.allclose(seg + s0, np.clip(orig, s0 - 0.5, s0 + 31.5))


def test_epoch_batches_group_videos_of_similar_length():
    lengths = np.array([100, 5, 60, 7, 90, 3, 80, 9, 70, 1, 50, 40, 30])  # 13 videos
    plain = epoch_batches(lengths, 4, 0, np.random.default_rng(0))
    order = np.random.default_rng(0).permutation(13)  # bucket 0: exactly the old random batches
    assert [b.tolist() for b in plain] == [order[i:i + 4].tolist() for i in range(0, 13, 4)]

    rng = np.random.default_rng(1)
    chunk_order = np.random.default_rng(1).permutation(13)
    bucketed = epoch_batches(lengths, 4, 2, rng)
    assert sorted(np.concatenate(bucketed).tolist()) == list(range(13))  # each video once
    assert sorted(len(b) for b in bucketed) == [1, 4, 4, 4]
    # Each chunk of 2 batches (8 videos) of the random order is sorted by length before it is cut into batches.
    first, rest = sorted(chunk_order[:8], key=lambda v: lengths[v]), sorted(chunk_order[8:], key=lambda v: lengths[v])
    expect = {tuple(first[:4]), tuple(first[4:]), tuple(rest[:4]), tuple(rest[4:])}
    assert {tuple(b.tolist()) for b in bucketed} == expect
    padded = lambda batches: sum(len(b) * lengths[b].max() for b in batches)  # noqa: E731
    assert padded(bucketed) < padded(plain)


def test_length_bucket_is_validated():
    from tal_pipeline.stages.detectors.training import resolve_train_config

    assert resolve_train_config("actionformer")["length_bucket"] == 0
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="length_bucket must be a whole number >= 0"):
            resolve_train_config("actionformer", {"length_bucket": bad})


def test_resolve_device_names_bad_values():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto") == auto
    with pytest.raises(ValueError, match="device 'gpu': expected auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match=f"device 'cuda:{torch.cuda.device_count()}': "):  # absent either way
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_window_starts_cover_long_videos():
    assert window_starts(50, 64) == [0]
    starts = window_starts(300, 128)
    assert starts == [0, 64, 128, 172]
    covered = np.zeros(300, bool)
    for s in starts:
        covered[s:s + 128] = True
    assert covered.all()


def test_schedule_and_ema_decay():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert lr_at(100, 100, 10, 1.0) == pytest.approx(0.0)
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999) == pytest.approx(91 / 100)
    assert ema_decay_at(10 ** 6, 0.999) == 0.999


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    feats, ann, labels, grid, durations = synthetic_feature_dataset(8, channels=12, num_classes=2, seed=3,
                                                                    min_len=40, max_len=70)
    cfg = {"epochs": 25, "batch_size": 4, "lr": 2e-3, "warmup_epochs": 1, "max_seq_len": 64,
           "model": {"width": 32, "levels": 4, "heads": 4, "window": 9}}
    state, config, log = train_detector("actionformer", feats, ann, labels, grid, cfg, seed=7, progress=False)
    return feats, ann, labels, grid, durations, cfg, state, config, log


def test_train_outputs_and_checkpoint_roundtrip(trained):
    feats, ann, labels, grid, durations, cfg, state, config, log = trained
    assert len(log) == 25 * 2 and {"epoch", "iteration", "lr", "total", "cls", "reg"} <= set(log[0])
    assert log[-1]["total"] < log[0]["total"]
    assert config["weights"] == "ema_last_epoch" and config["in_channels"] == 12
    assert config["time_grid"] == {"fps": 10.0, "window": 4, "stride": 2}  # one grid for every video, as stored
    json.dumps(config)  # JSON-able
    buf = io.BytesIO()
    torch.save({"state": state, "config": config}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    dets = detect("actionformer", loaded["state"], loaded["config"], feats, labels, grid, durations, max_dets=30)
    assert set(dets) == set(feats)
    for video, rows in dets.items():
        assert 0 < len(rows) <= 30
        scores = [r["score"] for r in rows]
        assert scores == sorted(scores, reverse=True)
        for r in rows:
            s, e = r["segment"]
            assert 0 <= s < e <= durations[video] and r["label"] in labels
    # detection quality: most ground truths found at tIoU >= 0.5 among the top-5 of their class
    hit = 0
    for r in ann.itertuples():
        for d in [d for d in dets[r.video] if d["label"] == r.label][:5]:
            s, e = d["segment"]
            inter = max(0.0, min(e, r.end) - max(s, r.start))
            if inter / ((e - s) + (r.end - r.start) - inter) >= 0.5:
                hit += 1
                break
    assert hit / len(ann) >= 0.7


def test_training_is_seeded(trained):
    feats, ann, labels, grid, durations, cfg, state, config, log = trained
    small = dict(cfg, epochs=2)
    # Deterministic mode (device auto: on CUDA where there is one, where it is what makes the runs repeat).
    s1, c1, l1 = train_detector("actionformer", feats, ann, labels, grid, small, seed=1, progress=False,
                                deterministic=True)
    s2, _, l2 = train_detector("actionformer", feats, ann, labels, grid, small, seed=1, progress=False,
                               deterministic=True)
    assert c1["deterministic"] and not torch.are_deterministic_algorithms_enabled()  # restored afterwards
    assert [r["total"] for r in l1] == [r["total"] for r in l2]
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_sliding_windows_reach_the_end_of_long_videos(trained):
    feats, ann, labels, grid, durations, cfg, state, config, log = trained
    # Concatenate all videos into one long one (T > 4 * max_seq_len) and shift the annotations.
    order = sorted(feats)
    long = np.concatenate([feats[v] for v in order])
    offsets = np.cumsum([0] + [feats[v].shape[0] for v in order])
    step_s = grid.step_seconds
    rows = [(r.label, r.start + offsets[order.index(r.video)] * step_s, r.end + offsets[order.index(r.video)] * step_s)
            for r in ann.itertuples()]
    dur = float(long.shape[0] * step_s + 1.0)
    dets = detect("actionformer", state, config, {"long": long}, labels, grid, {"long": dur}, max_dets=200)["long"]
    last_label, last_s, last_e = max(rows, key=lambda r: r[1])
    assert last_s > 3 * 64 * step_s  # the last action is far beyond the first window
    best = max((min(d["segment"][1], last_e) - max(d["segment"][0], last_s)) /
               (max(d["segment"][1], last_e) - min(d["segment"][0], last_s))
               for d in dets if d["label"] == last_label)
    assert best >= 0.5


def test_detect_refuses_wrong_width(trained):
    feats, ann, labels, grid, durations, cfg, state, config, log = trained
    with pytest.raises(ValueError, match="wide_video.*13 channels.*expects 12"):
        detect("actionformer", state, config, {"wide_video": np.zeros((20, 13), np.float32)}, labels, grid,
               {"wide_video": 5.0})


def test_afsd_trains_through_the_same_interface():
    feats, ann, labels, grid, durations = synthetic_feature_dataset(4, channels=8, num_classes=2, seed=5, min_len=40,
                                                                    max_len=50)
    cfg = {"epochs": 2, "batch_size": 2, "max_seq_len": 32, "model": {"width": 16, "levels": 3}}
    state, config, log = train_detector("afsd", feats, ann, labels, grid, cfg, seed=0, progress=False)
    assert {"cls_coarse", "loc_coarse", "cls_refined", "loc_refined", "quality", "act", "triplet"} <= set(log[0])
    dets = detect("afsd", state, config, feats, labels, grid, durations, max_dets=7)
    assert all(len(v) <= 7 for v in dets.values())
