"""BAPG evidence calibrated per video (stages/bapg/calibration.py; the fusion setting rank_normalise): quantiles on
hand-made numbers, invariance to a monotone transform of a video's channel, padding excluded, and a detector
trained with it whose detections do not move when a test video's evidence is rescaled (the fold encoders against
the full encoder)."""
from __future__ import annotations

import numpy as np
import pytest

from tal_pipeline.stages.bapg.calibration import calibrate_videos, rank_normalise
from tal_pipeline.stages.detectors.detection import detect
from tal_pipeline.stages.detectors.training import train_detector
from tests.synthetic_features import synthetic_feature_dataset


def test_quantiles_on_hand_made_numbers():
    x = np.array([[3.0, 5.0], [1.0, 5.0], [2.0, 5.0], [2.0, 5.0], [7.0, 5.0]])  # (T 5, K 2)
    # ranks of column 0 (0-based): 1 -> 0, the two 2s share (1 + 2) / 2, 3 -> 3, 7 -> 4; over n - 1 = 4
    np.testing.assert_allclose(rank_normalise(x)[:, 0], [0.75, 0.0, 0.375, 0.375, 1.0])
    np.testing.assert_allclose(rank_normalise(x)[:, 1], 0.5)  # a constant channel says nothing: the middle
    assert rank_normalise(x).dtype == np.float32
    np.testing.assert_allclose(rank_normalise(np.array([[4.0, -1.0]])), [[0.5, 0.5]])  # one step


def test_invariant_to_an_increasing_transform_of_a_videos_channel():
    rng = np.random.default_rng(0)
    b = rng.normal(size=(50, 4))  # (T, K)
    b[10:20, 2] = 0.3  # ties too
    moved = np.stack([np.exp(3 * b[:, 0]), 10 * b[:, 1] + 4, b[:, 2] ** 3, np.arctan(b[:, 3])], axis=1)
    np.testing.assert_array_equal(rank_normalise(moved), rank_normalise(b))
    assert not np.array_equal(rank_normalise(-b), rank_normalise(b))  # a decreasing one reverses the order


def test_padding_steps_are_excluded():
    rng = np.random.default_rng(1)
    b = rng.normal(size=(30, 3))
    valid = np.ones(30, bool)
    valid[22:] = False
    padded = b.copy()
    padded[22:] = 1e6  # padding that would take the top ranks if it counted
    got = rank_normalise(padded, valid)
    np.testing.assert_array_equal(got[:22], rank_normalise(b[:22]))
    assert np.all(got[22:] == 0) and got[:22].max() == 1.0
    with pytest.raises(ValueError, match="video 'v1'.*valid mask"):
        rank_normalise(b, valid[:10], video="v1")


def test_bad_values_name_the_video():
    b = np.zeros((5, 2))
    b[3, 1] = np.nan
    with pytest.raises(ValueError, match="video 'clip_7': BAPG channels contain NaN"):
        rank_normalise(b, video="clip_7")
    with pytest.raises(ValueError, match="video 'clip_8'.*do not hold 4 BAPG channels"):
        calibrate_videos({"clip_8": np.zeros((5, 3))}, 4, {"rank_normalise": True})


def test_calibrate_videos_touches_only_the_bapg_channels_and_only_when_on():
    rng = np.random.default_rng(2)
    feats = {"a": rng.normal(size=(12, 5)).astype(np.float32), "b": rng.normal(size=(7, 5)).astype(np.float32)}
    assert calibrate_videos(feats, 2, {"lr_scale": 0.1}) is feats  # off: the very same arrays
    assert calibrate_videos(feats, 0, {"rank_normalise": True}) is feats
    out = calibrate_videos(feats, 2, {"rank_normalise": True})
    for v, x in feats.items():
        np.testing.assert_array_equal(out[v][:, :3], x[:, :3])
        np.testing.assert_array_equal(out[v][:, 3:], rank_normalise(x[:, 3:]))


def _data():
    feats, ann, labels, grid, durations = synthetic_feature_dataset(
        num_videos=5, channels=8, num_classes=2, seed=4, min_len=40, max_len=60, noise=0.3, signal=2.0)
    rng = np.random.default_rng(3)
    both = {v: np.concatenate([x, rng.normal(2.0, 1.5, size=(len(x), 3)).astype(np.float32)], 1)
            for v, x in feats.items()}
    return both, ann, labels, grid, durations


def test_a_rank_normalised_detector_ignores_the_scale_of_a_test_videos_evidence(torch_one_thread):
    """The full encoder's evidence on a test video, 3 x the fold encoders' plus 1: the same detections with
    rank_normalise; other detections without it (the failure the option removes)."""
    both, ann, labels, grid, durations = _data()
    train = {v: both[v] for v in sorted(both)[:4]}
    test = sorted(both)[4]
    rescaled = both[test].copy()
    rescaled[:, -3:] = 3 * rescaled[:, -3:] + 1
    small = {"epochs": 3, "warmup_epochs": 0, "model": {"width": 16, "levels": 3, "window": 5},
             "fusion": {"lr_scale": 1.0}}
    found = {}
    for rank in (False, True):
        cfg_in = {**small, "fusion": {**small["fusion"], "rank_normalise": rank}}
        state, cfg, _ = train_detector("actionformer", train, ann, labels, grid, cfg_in, bapg_channels=3,
                                       progress=False)
        assert cfg["fusion"].get("rank_normalise", False) is rank  # recorded only when on
        if rank:  # standardised after ranking: the statistics are the quantiles' (mean 1/2, std ~ 1/sqrt(12))
            np.testing.assert_allclose(state["bapg_mean"].numpy(), 0.5, atol=1e-6)
            np.testing.assert_allclose(state["bapg_std"].numpy(), 12 ** -0.5, atol=0.01)
        found[rank] = [detect("actionformer", state, cfg, {test: x}, labels, grid, durations)[test]
                       for x in (both[test], rescaled)]
    assert found[True][0] == found[True][1]
    assert found[False][0] != found[False][1]
