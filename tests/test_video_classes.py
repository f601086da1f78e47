"""Video-level classes for class-agnostic detections (stages/classification/): the classifier on pooled features,
the reader of external scores in the CUHK layout, and ActionFormer's top-2 sqrt fusion."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tal_pipeline.stages.classification.video_classifier import (
    pooled_features,
    top1_accuracy,
    train_video_classifier,
    video_class_scores,
)
from tal_pipeline.stages.classification.video_scores import fuse_video_classes, read_video_scores, scores_payload


def _toy(n_per_class: int, seed: int, classes=("jump", "run", "swim")):
    """Videos of 20-60 steps of noise; inside a third of each video, the class's own channel is on (+3)."""
    rng = np.random.default_rng(seed)
    feats, labels = {}, {}
    for k, c in enumerate(classes):
        for i in range(n_per_class):
            t = int(rng.integers(20, 60))
            x = rng.normal(size=(t, 8)) * 0.5
            x[t // 3: 2 * t // 3, k] += 3.0
            name = f"{c}_{seed}_{i}"
            feats[name], labels[name] = x, [c]
    return feats, labels


def test_pooled_features_are_mean_then_max():
    x = np.array([[1.0, -2.0], [3.0, 0.0]])
    np.testing.assert_array_equal(pooled_features(x), [2.0, -1.0, 3.0, 0.0])
    with pytest.raises(ValueError, match="video 'v'.*NaN"):
        pooled_features(np.array([[np.nan]]), "v")


@pytest.mark.parametrize("hidden", [0, 16])
def test_classifier_learns_a_separable_toy_set(hidden, torch_one_thread):
    train, train_labels = _toy(6, seed=0)
    test, test_labels = _toy(4, seed=1)
    # a video with no action is all negatives; a video with two classes is a positive of both
    train["empty"], train_labels["empty"] = np.random.default_rng(2).normal(size=(30, 8)) * 0.5, []
    both = np.random.default_rng(3).normal(size=(40, 8)) * 0.5
    both[5:15, 0] += 3.0
    both[25:35, 2] += 3.0
    train["both"], train_labels["both"] = both, ["jump", "swim"]
    train = {v: pooled_features(x, v) for v, x in train.items()}
    state, cfg = train_video_classifier(train, train_labels, {"hidden": hidden, "epochs": 200}, seed=0)
    assert cfg["classes"] == ["jump", "run", "swim"] and cfg["train_top1"] == 1.0
    scores = video_class_scores(state, cfg, {v: pooled_features(x, v) for v, x in test.items()})
    assert top1_accuracy(scores, test_labels, cfg["classes"]) == 1.0
    assert all(s.shape == (3,) and ((0 <= s) & (s <= 1)).all() for s in scores.values())
    # seeded: the same weights again
    again, _ = train_video_classifier(train, train_labels, {"hidden": hidden, "epochs": 200}, seed=0)
    assert all((again[k] == v).all() for k, v in state.items())
    with pytest.raises(ValueError, match="unknown setting"):
        train_video_classifier(train, train_labels, {"layers": 2})
    with pytest.raises(ValueError, match="video 'jump_1_0': pooled features of shape"):
        video_class_scores(state, cfg, {"jump_1_0": test["jump_1_0"]})  # (T, C), not pooled


def test_top1_counts_only_labelled_videos():
    scores = {"a": np.array([0.9, 0.1]), "b": np.array([0.2, 0.7]), "c": np.array([0.5, 0.4])}
    assert top1_accuracy(scores, {"a": ["x"], "b": ["x"], "c": []}, ["x", "y"]) == 0.5
    assert top1_accuracy(scores, {"c": []}, ["x", "y"]) is None


def test_external_scores_good_file_missing_video_and_wrong_length(tmp_path):
    classes = ["Archery", "Bathing dog", "Capoeira"]
    good = tmp_path / "cuhk.json"
    good.write_text(json.dumps({"results": {"vid1": [0.1, 0.7, 0.2], "v_vid2": [0.5, 0.25, 0.25]},
                                "class": classes}))
    scores, names = read_video_scores(good, ["vid1", "vid2"])
    assert names == classes
    np.testing.assert_array_equal(scores["vid1"], [0.1, 0.7, 0.2])
    np.testing.assert_array_equal(scores["vid2"], [0.5, 0.25, 0.25])  # found as v_vid2
    with pytest.raises(ValueError, match=r"cuhk\.json: no scores for video 'vid3'"):
        read_video_scores(good, ["vid1", "vid3"])
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"results": {"vid1": [0.1, 0.7]}, "class": classes}))
    with pytest.raises(ValueError, match=r"short\.json: video 'vid1' has 2 scores, expected 3"):
        read_video_scores(short, ["vid1"])
    nameless = tmp_path / "nameless.json"
    nameless.write_text(json.dumps({"results": {"vid1": [0.1, 0.7, 0.2]}}))
    with pytest.raises(ValueError, match=r"nameless\.json: no \"class\" list"):
        read_video_scores(nameless, ["vid1"])
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": ')
    with pytest.raises(ValueError, match=r"broken\.json: not a readable JSON"):
        read_video_scores(broken, ["vid1"])
    # what ClassifyVideos writes is the same layout
    written = tmp_path / "ours.json"
    written.write_text(json.dumps(scores_payload(scores, classes)))
    again, _ = read_video_scores(written, ["vid1", "vid2"])
    assert all((again[v] == scores[v]).all() for v in scores)


def test_top2_sqrt_fusion_on_hand_made_numbers():
    dets = {"v": [{"segment": [1.0, 5.0], "label": "action", "score": 0.8},
                  {"segment": [7.0, 9.0], "label": "action", "score": 0.2}]}
    scores = {"v": np.array([0.1, 0.6, 0.3])}
    fused = fuse_video_classes(dets, scores, ["a", "b", "c"], topk=2)["v"]
    expect = [([1.0, 5.0], "b", math.sqrt(0.6 * 0.8)), ([1.0, 5.0], "c", math.sqrt(0.3 * 0.8)),
              ([7.0, 9.0], "b", math.sqrt(0.6 * 0.2)), ([7.0, 9.0], "c", math.sqrt(0.3 * 0.2))]
    assert [(d["segment"], d["label"]) for d in fused] == [(s, c) for s, c, _ in expect]
    np.testing.assert_allclose([d["score"] for d in fused], [x for _, _, x in expect], rtol=1e-12)
    assert len(fuse_video_classes(dets, scores, ["a", "b", "c"], topk=1)["v"]) == 2
    with pytest.raises(ValueError, match="scores.json: no scores for video 'v'"):
        fuse_video_classes(dets, {}, ["a", "b", "c"], source="scores.json")
