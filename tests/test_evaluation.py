"""Detection mAP: hand-computed cases for both modes, input checks, the evaluate CLI, the real THUMOS14 GT,
and the vectorised evaluator against the plain-Python reference on random data."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from tal_pipeline.stages.evaluation.mean_ap import PRED_COLUMNS, evaluate_detections, load_predictions, threshold_preset
from tal_pipeline.storage.annotations import INSTANCE_COLUMNS, Annotations, load_annotations
from tests.reference_evaluation import evaluate_detections_reference


def make_gt(actions, ambiguous=(), videos=None) -> Annotations:
    """Annotations from (video, label, start, end) rows and (video, start, end) Ambiguous rows, unvalidated."""
    names = videos or sorted({a[0] for a in actions} | {a[0] for a in ambiguous})
    table = pd.DataFrame({"video": names, "subset": "test", "duration": 1000.0, "fps": 30.0})
    rows = [(v, "test", label, s, e, False) for v, label, s, e in actions]
    rows += [(v, "test", "Ambiguous", s, e, True) for v, s, e in ambiguous]
    instances = pd.DataFrame(rows, columns=INSTANCE_COLUMNS).astype({"start": float, "end": float, "ambiguous": bool})
    return Annotations(table, instances, "test-gt")


def preds(rows) -> pd.DataFrame:
    """Prediction table from (video, start, end, label, score) rows."""
    return pd.DataFrame(rows, columns=PRED_COLUMNS).astype({"start": float, "end": float, "score": float})


def ap_of(result, label):
    return result["per_class_AP"][label]


BOTH = ["anet", "thumos14"]


@pytest.mark.parametrize("mode", BOTH)
def test_perfect_predictions_score_one(mode):
    truth = [("v1", "A", 0, 10), ("v1", "A", 20, 30), ("v2", "B", 5, 15)]
    result = evaluate_detections(make_gt(truth), preds([(v, s, e, label, 1.0) for v, label, s, e in truth]), mode=mode)
    assert result["mAP"] == [1.0] * 5 and result["average_mAP"] == 1.0
    assert result["recall"]["1x"] == [1.0] * 5


def test_threshold_presets_have_no_float_drift():
    assert threshold_preset("thumos14") == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert threshold_preset("activitynet") == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    result = evaluate_detections(make_gt([("v1", "A", 0, 10)]), preds([]), thresholds="activitynet")
    assert json.dumps(result["thresholds"]) == "[0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]"


@pytest.mark.parametrize("mode", BOTH)
def test_score_ties_keep_table_order(mode):
    gt = make_gt([("v1", "A", 0, 10)])
    fp, tp = ("v1", 50, 60, "A", 0.5), ("v1", 0, 10, "A", 0.5)
    # FP first in the table: ranking FP, TP -> precision at the TP 1/2 (envelope also 1/2)
    assert evaluate_detections(gt, preds([fp, tp]), mode=mode)["mAP"] == [0.5] * 5
    assert evaluate_detections(gt, preds([tp, fp]), mode=mode)["mAP"] == [1.0] * 5


@pytest.mark.parametrize("mode", BOTH)
def test_second_detection_on_same_gt_is_false_positive(mode):
    gt = make_gt([("v1", "A", 0, 10), ("v1", "A", 20, 30)])
    rows = [("v1", 0, 10, "A", 0.9), ("v1", 0, 10, "A", 0.8), ("v1", 20, 30, "A", 0.7)]
    result = evaluate_detections(gt, preds(rows), mode=mode)
    # ranking TP, FP, TP: precisions 1, 2/3 at the TPs -> AP (1 + 2/3) / 2 = 5/6 (the envelope changes nothing)
    assert result["mAP"] == pytest.approx([5 / 6] * 5)
    # top 1 x #GT = 2 detections hold one TP; top 5 x #GT hold both
    assert result["recall"]["1x"] == [0.5] * 5 and result["recall"]["5x"] == [1.0] * 5


def test_detection_matches_the_highest_tiou_gt():
    gt = make_gt([("v1", "A", 0, 10), ("v1", "A", 2, 10)])
    # d1 [2,10]: tIoU 0.8 with [0,10], 1.0 with [2,10] -> takes [2,10];
    # d2 [0,6]: tIoU 0.6 with [0,10] (free) -> TP. Taking the first GT above 0.5 would leave d2 with
    # [2,10] at tIoU 4/10 = 0.4 -> FP and AP 1/2.
    result = evaluate_detections(gt, preds([("v1", 2, 10, "A", 0.9), ("v1", 0, 6, "A", 0.8)]), thresholds=[0.5])
    assert result["mAP"] == [1.0]


@pytest.mark.parametrize("mode", BOTH)
def test_cliffdiving_and_diving_on_one_segment_both_count(mode):
    gt = make_gt([("v1", "CliffDiving", 0, 10), ("v1", "Diving", 0, 10)])
    both = evaluate_detections(gt, preds([("v1", 0, 10, "CliffDiving", 0.9), ("v1", 0, 10, "Diving", 0.9)]), mode=mode)
    assert both["mAP"] == [1.0] * 5
    diving_only = evaluate_detections(gt, preds([("v1", 0, 10, "Diving", 0.9)]), mode=mode)
    assert ap_of(diving_only, "Diving") == [1.0] * 5 and ap_of(diving_only, "CliffDiving") == [0.0] * 5
    assert diving_only["mAP"] == [0.5] * 5


def test_ambiguous_ignored_in_thumos14_mode_only():
    gt = make_gt([("v1", "A", 0, 10)], ambiguous=[("v1", 20, 30)])
    on_ambiguous = ("v1", 22, 28, "A", 0.9)  # unmatched, intersects the Ambiguous segment
    result = {mode: evaluate_detections(gt, preds([on_ambiguous, ("v1", 0, 10, "A", 0.8)]), mode=mode) for mode in BOTH}
    assert result["anet"]["mAP"] == [0.5] * 5  # FP, TP
    assert result["thumos14"]["mAP"] == [1.0] * 5  # the FP leaves the ranking
    assert result["thumos14"]["report"]["ambiguous_ignored"] == [1] * 5
    # touching the Ambiguous segment at its end point is no overlap: still an FP
    touching = evaluate_detections(gt, preds([("v1", 30, 35, "A", 0.9), ("v1", 0, 10, "A", 0.8)]), mode="thumos14")
    assert touching["mAP"] == [0.5] * 5


def test_ambiguous_of_another_video_does_not_count():
    gt = make_gt([("v1", "A", 0, 10)], ambiguous=[("v2", 20, 30)])
    result = evaluate_detections(gt, preds([("v1", 22, 28, "A", 0.9), ("v1", 0, 10, "A", 0.8)]), mode="thumos14")
    assert result["mAP"] == [0.5] * 5


def test_exact_threshold_counts_in_anet_not_in_thumos14():
    gt = make_gt([("v1", "A", 0, 4)])
    half = preds([("v1", 0, 2, "A", 0.9)])  # tIoU exactly 2/4 = 0.5
    assert evaluate_detections(gt, half, thresholds=[0.5], mode="anet")["mAP"] == [1.0]
    assert evaluate_detections(gt, half, thresholds=[0.5], mode="thumos14")["mAP"] == [0.0]


@pytest.mark.parametrize("mode", BOTH)
def test_empty_predictions(mode, tmp_path):
    gt = make_gt([("v1", "A", 0, 10), ("v2", "B", 0, 5)])
    result = evaluate_detections(gt, pd.DataFrame(columns=PRED_COLUMNS), mode=mode)
    assert result["mAP"] == [0.0] * 5 and result["average_mAP"] == 0.0
    assert result["per_class_AP"] == {"A": [0.0] * 5, "B": [0.0] * 5}
    path = tmp_path / "empty.json"
    path.write_text('{"results": {}}')
    assert evaluate_detections(gt, load_predictions(path), mode=mode)["mAP"] == [0.0] * 5


def test_video_without_gt_reported_and_ignored():
    gt = make_gt([("v1", "A", 0, 10)])
    result = evaluate_detections(gt, preds([("v9", 0, 10, "A", 0.99), ("v1", 0, 10, "A", 0.5)]))
    assert result["report"]["ignored_videos"] == ["v9"]
    assert result["report"]["ignored_predictions"] == 1
    assert result["mAP"] == [1.0] * 5  # counted, the v9 detection would be an FP ranked first


def test_gt_video_without_actions_gives_false_positives():
    gt = make_gt([("v1", "A", 0, 10)], videos=["v1", "v2"])
    result = evaluate_detections(gt, preds([("v2", 0, 10, "A", 0.99), ("v1", 0, 10, "A", 0.5)]))
    assert result["report"]["ignored_videos"] == [] and result["mAP"] == [0.5] * 5


def test_unknown_label_reported_and_ignored():
    gt = make_gt([("v1", "A", 0, 10)])
    result = evaluate_detections(gt, preds([("v1", 0, 10, "Zebra", 0.99), ("v1", 0, 10, "A", 0.5)]))
    assert result["report"]["ignored_labels"] == ["Zebra"]
    assert list(result["per_class_AP"]) == ["A"] and result["mAP"] == [1.0] * 5


def test_duplicate_gt_removed_and_reported():
    gt = make_gt([("v1", "A", 0, 10), ("v1", "A", 0, 10)])
    result = evaluate_detections(gt, preds([("v1", 0, 10, "A", 0.9)]))
    assert result["report"]["duplicate_gt_removed"] == 1
    assert result["mAP"] == [1.0] * 5  # kept, the copy would be a missed GT: AP 1/2


def test_cap_keeps_top_scores_per_video_across_classes():
    gt = make_gt([("v1", "A", 0, 10), ("v1", "B", 20, 30), ("v2", "A", 0, 10)])
    rows = [("v1", 0, 10, "A", 0.3), ("v1", 20, 30, "B", 0.9), ("v1", 40, 50, "A", 0.8), ("v2", 0, 10, "A", 0.1)]
    capped = evaluate_detections(gt, preds(rows), max_dets=2)
    # v1 keeps B 0.9 and the A FP 0.8; its A TP (0.3) goes. v2 keeps its only detection.
    # A: ranking FP(0.8), TP(0.1) -> AP 1/2 / 2 GT = 1/4 ; B: 1
    assert capped["report"]["dropped_by_cap"] == 1 and capped["report"]["max_dets"] == 2
    assert ap_of(capped, "A") == [0.25] * 5 and capped["mAP"] == [0.625] * 5
    uncapped = evaluate_detections(gt, preds(rows), max_dets=None)
    # A: FP(0.8), TP(0.3), TP(0.1) -> precisions 1/2, 2/3 at the TPs; monotone: 2/3, 2/3 -> AP 2/3
    assert uncapped["report"]["dropped_by_cap"] == 0
    assert ap_of(uncapped, "A") == pytest.approx([2 / 3] * 5)
    # non-interpolated: (1/2 + 2/3) / 2 = 7/12
    result = evaluate_detections(gt, preds(rows), max_dets=None, mode="thumos14")
    assert ap_of(result, "A") == pytest.approx([7 / 12] * 5)


def test_interpolated_and_plain_ap_by_hand():
    # 3 GT; ranking TP, FP, FP, TP, TP -> precision 1, 1/2, 1/3, 2/4, 3/5.
    # plain (thumos14):   (1 + 2/4 + 3/5) / 3 = 2.1 / 3 = 0.7
    # interpolated (anet): monotone precision at the TPs: max(prec[i:]) = 1, 3/5, 3/5 -> 2.2 / 3 = 0.7333
    gt = make_gt([("v1", "A", 0, 10), ("v1", "A", 20, 30), ("v1", "A", 40, 50)])
    rows = [("v1", 0, 10, "A", 0.9), ("v1", 60, 70, "A", 0.8), ("v1", 80, 90, "A", 0.7),
            ("v1", 20, 30, "A", 0.6), ("v1", 40, 50, "A", 0.5)]
    assert evaluate_detections(gt, preds(rows), mode="thumos14")["mAP"] == pytest.approx([0.7] * 5)
    assert evaluate_detections(gt, preds(rows), mode="anet")["mAP"] == pytest.approx([2.2 / 3] * 5)


def test_prediction_table_checks():
    gt = make_gt([("v1", "A", 0, 10)])
    with pytest.raises(ValueError, match="missing column"):
        evaluate_detections(gt, pd.DataFrame({"video": ["v1"], "start": [0.0]}))
    with pytest.raises(ValueError, match="ends before it starts"):
        evaluate_detections(gt, preds([("v1", 5, 1, "A", 0.9)]))
    with pytest.raises(ValueError, match="score"):
        evaluate_detections(gt, preds([("v1", 0, 1, "A", float("nan"))]))
    with pytest.raises(ValueError, match="mode"):
        evaluate_detections(gt, preds([]), mode="coco")
    with pytest.raises(ValueError, match="thresholds"):
        evaluate_detections(gt, preds([]), thresholds=[0.0])


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "not valid JSON"),
        ('{"detections": {}}', "'results'"),
        ('{"results": {"v1": [{"segment": [0, 1], "score": 0.5}]}}', "missing key"),
        ('{"results": {"v1": [{"segment": [0, NaN], "label": "A", "score": 0.5}]}}', "segment end"),
        ('{"results": {"v1": [{"segment": [0, 1], "label": "A", "score": Infinity}]}}', "score"),
        ('{"results": {"v1": [{"segment": [4, 1], "label": "A", "score": 0.5}]}}', "ends before it starts"),
        ('{"results": {"v1": [{"segment": [1], "label": "A", "score": 0.5}]}}', "segment"),
    ],
)
def test_load_predictions_errors_name_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "pred.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem) as info:
        load_predictions(path)
    assert str(path) in str(info.value)


def test_load_predictions_reads_results(tmp_path):
    path = tmp_path / "pred.json"
    path.write_text('{"results": {"v1": [{"segment": [1, 2.5], "label": "A", "score": 0.7}], "v2": []}}')
    table = load_predictions(path)
    assert table.to_dict("records") == [{"video": "v1", "start": 1.0, "end": 2.5, "label": "A", "score": 0.7}]
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_predictions(tmp_path / "nope.json")


def write_files(tmp_path):
    database = {"v1": {"subset": "test", "duration": 100.0, "annotations": [
        {"segment": [0, 10], "label": "A"}, {"segment": [20, 30], "label": "B"}]},
        "v2": {"subset": "validation", "duration": 50.0, "annotations": [{"segment": [1, 2], "label": "A"}]}}
    (tmp_path / "gt.json").write_text(json.dumps({"database": database}))
    results = {"v1": [{"segment": [0, 10], "label": "A", "score": 0.9},
                      {"segment": [20, 26], "label": "B", "score": 0.8}]}
    (tmp_path / "pred.json").write_text(json.dumps({"results": results}))
    return tmp_path / "gt.json", tmp_path / "pred.json"


def test_cli_json(tmp_path, capsys):
    gt, pred = write_files(tmp_path)
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--subset", "test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # B: tIoU 6/10 = 0.6 -> TP at 0.3..0.6, missed at 0.7
    assert out["thresholds"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert out["per_class_AP"] == {"A": [1.0] * 5, "B": [1.0, 1.0, 1.0, 1.0, 0.0]}
    assert out["mAP"] == [1.0, 1.0, 1.0, 1.0, 0.5] and out["average_mAP"] == pytest.approx(0.9)
    # without --subset the validation video's A instance is a missed GT
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--preset", "activitynet", "--mode", "thumos14",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["thresholds"]) == 10 and out["per_class_AP"]["A"] == [0.5] * 10


def test_cli_table_and_errors(tmp_path, capsys):
    gt, pred = write_files(tmp_path)
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--subset", "test"]) == 0
    out = capsys.readouterr().out
    assert "mAP" in out and "90.00" in out
    bad = tmp_path / "bad.json"
    bad.write_text('{"results": {"v1": [{"segment": [0, 1], "label": "A"}]}}')
    assert main(["evaluate", "--gt", str(gt), "--pred", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "missing key" in err and len(err.strip().splitlines()) == 1
    assert main(["evaluate", "--gt", str(tmp_path / "none.json"), "--pred", str(pred)]) == 2
    assert "none.json" in capsys.readouterr().err


@pytest.mark.parametrize("mode", BOTH)
def test_real_thumos14_perfect_predictions(shared_data, mode):
    gt = load_annotations(shared_data / "thumos14" / "thumos14_anet_style.json", beyond_duration="keep")
    test = gt.subset("test").actions
    perfect = pd.DataFrame({"video": test["video"], "start": test["start"], "end": test["end"],
                            "label": test["label"], "score": 1.0})
    result = evaluate_detections(gt, perfect, mode=mode, subset="test", max_dets=None)
    assert result["mAP"] == [1.0] * 5 and len(result["per_class_AP"]) == 20
    assert result["report"]["gt_instances"] == 3358
    # the default cap of 200 per video bites on THUMOS14's busiest test video (218 actions)
    capped = evaluate_detections(gt, perfect, mode=mode, subset="test")
    assert capped["report"]["dropped_by_cap"] == 18 and capped["average_mAP"] < 1.0


def random_case(seed: int):
    """Small random GT and predictions on a 0.5 s grid (so exact tIoU ties and score ties happen)."""
    rng = np.random.default_rng(seed)
    labels, videos = ["A", "B", "C"], [f"v{i}" for i in range(5)]
    actions = []
    for _ in range(int(rng.integers(1, 30))):
        s = float(rng.integers(0, 60)) / 2
        actions.append((str(rng.choice(videos)), str(rng.choice(labels)), s, s + float(rng.integers(1, 16)) / 2))
    actions += actions[: seed % 3]  # duplicate GT rows in two of three cases
    ambiguous = [(str(rng.choice(videos)), s, s + 3.0) for s in rng.integers(0, 30, size=3).astype(float)]
    rows = []
    for _ in range(int(rng.integers(0, 120))):
        if actions and rng.random() < 0.6:
            v, label, s, e = actions[int(rng.integers(len(actions)))]
            s, e = max(0.0, s + float(rng.integers(-4, 5)) / 2), e + float(rng.integers(-4, 5)) / 2
            e = max(e, s)
        else:
            v, label = str(rng.choice(videos + ["v_extra"])), str(rng.choice(labels + ["Z"]))
            s = float(rng.integers(0, 60)) / 2
            e = s + float(rng.integers(0, 10)) / 2
        rows.append((v, s, e, label, float(rng.integers(0, 5)) / 4))
    return make_gt(actions, ambiguous, videos=videos), preds(rows)


@pytest.mark.parametrize("mode", BOTH)
def test_vectorised_equals_reference_on_random_data(mode):
    for seed in range(60):
        gt, predictions = random_case(seed)
        kwargs = dict(mode=mode, max_dets=[None, 3, 10][seed % 3], thresholds=[0.1, 0.3, 0.5, 0.7, 1.0])
        ours = evaluate_detections(gt, predictions, **kwargs)
        ref = evaluate_detections_reference(gt, predictions, **kwargs)
        assert np.allclose(ours["mAP"], ref["mAP"], atol=1e-12), seed
        assert ours["per_class_AP"].keys() == ref["per_class_AP"].keys()
        assert np.allclose(list(ours["per_class_AP"].values()), list(ref["per_class_AP"].values()), atol=1e-12), seed
        assert ours["recall"].keys() == ref["recall"].keys()
        assert all(np.allclose(ours["recall"][k], ref["recall"][k], atol=1e-12) for k in ref["recall"]), seed
        for key in ("ignored_videos", "ignored_labels", "ignored_predictions", "dropped_by_cap",
                    "duplicate_gt_removed", "evaluated_predictions", "gt_instances"):
            assert ours["report"][key] == ref["report"][key], (seed, key)


def test_invalid_segments_refused_by_default_or_dropped_and_counted(tmp_path, capsys):
    gt = make_gt([("v1", "A", 0, 10)])
    rows = [("v1", 0, 10, "A", 0.9), ("v1", 12, 11, "A", 0.8), ("v1", 30, 20, "A", 0.7)]
    with pytest.raises(ValueError, match="2 such segment"):
        evaluate_detections(gt, preds(rows))
    result = evaluate_detections(gt, preds(rows), invalid="drop")
    assert result["report"]["invalid_dropped"] == 2 and result["mAP"] == pytest.approx([1.0] * 5)
    assert evaluate_detections(gt, preds(rows[:1]))["report"]["invalid_dropped"] == 0
    # the CLI: refused (exit 2, names the file) unless --drop-invalid, which reports what it dropped
    gt_file, _ = write_files(tmp_path)
    pred = tmp_path / "clipped.json"
    pred.write_text(json.dumps({"results": {"v2": [{"segment": [5, 4], "label": "B", "score": 0.5}]}}))
    assert main(["evaluate", "--gt", str(gt_file), "--pred", str(pred)]) == 2
    assert "clipped.json" in capsys.readouterr().err
    assert main(["evaluate", "--gt", str(gt_file), "--pred", str(pred), "--drop-invalid", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"]["invalid_dropped"] == 1


def _anet_detection_ap(gt_rows, pred_rows, thresholds) -> np.ndarray:
    """ActivityNet's own algorithm (the ANETdetection class of the official evaluation code, re-derived here):
    per class, predictions by descending score each take the unmatched ground truth of its video with the
    highest tIoU >= the threshold, else count as false positives; AP is the area under the interpolated
    precision envelope. Returns the (thresholds,) mAP over the classes of the ground truth."""
    classes = sorted({label for _, label, _, _ in gt_rows})
    aps = np.zeros((len(thresholds), len(classes)))
    for c, label in enumerate(classes):
        gt = [(v, s, e) for v, lab, s, e in gt_rows if lab == label]
        pred = sorted([(score, v, s, e) for v, s, e, lab, score in pred_rows if lab == label], reverse=True)
        for t, thr in enumerate(thresholds):
            taken, tp = [False] * len(gt), []
            for _, v, s, e in pred:
                ious = [(max(0.0, min(e, ge) - max(s, gs)) / ((e - s) + (ge - gs) - max(0.0, min(e, ge) - max(s, gs))),
                         j) for j, (gv, gs, ge) in enumerate(gt) if gv == v]
                hit = next((j for iou, j in sorted(ious, reverse=True) if iou >= thr and not taken[j]), None)
                if hit is not None:
                    taken[hit] = True
                tp.append(hit is not None)
            tp_sum = np.cumsum(tp)
            recall = np.concatenate([[0.0], tp_sum / len(gt), [1.0]])
            precision = np.concatenate([[0.0], tp_sum / np.arange(1, len(tp) + 1), [0.0]])
            precision = np.maximum.accumulate(precision[::-1])[::-1]  # the interpolated envelope
            steps = np.nonzero(recall[1:] != recall[:-1])[0] + 1
            aps[t, c] = np.sum((recall[steps] - recall[steps - 1]) * precision[steps])
    return aps.mean(axis=1)


def test_anet_mode_equals_activitynets_algorithm_on_activitynet_shaped_data():
    """ActivityNet-shaped data (2-minute videos, 1-2 long instances covering about half of each, many classes,
    100 class-agnostic-style detections per video with top-2 classes) at tIoU 0.5:0.05:0.95: the anet mode gives
    ActivityNet's numbers (scores without ties: the official code's tie order is numpy's unstable argsort)."""
    rng = np.random.default_rng(7)
    labels = [f"class_{i:03d}" for i in range(40)]
    gt_rows, pred_rows = [], []
    for i in range(60):
        video, duration = f"v_{i:04d}", float(rng.uniform(60, 200))
        video_classes = list(rng.choice(labels, size=2, replace=False))
        n = int(rng.integers(1, 3))
        for k in range(n):
            length = duration * float(rng.uniform(0.2, 0.5)) / n
            start = float(rng.uniform(k * duration / n, (k + 1) * duration / n - length))
            gt_rows.append((video, video_classes[0], start, start + length))
        for _ in range(50):  # 50 segments x top-2 classes = 100 detections
            if rng.random() < 0.5:
                _, _, s, e = gt_rows[-int(rng.integers(1, n + 1))]
                s, e = s + float(rng.normal(0, 0.1 * (e - s))), e + float(rng.normal(0, 0.1 * (e - s)))
            else:
                s = float(rng.uniform(0, duration - 5))
                e = s + float(rng.uniform(2, duration - s))
            s, e = max(0.0, s), min(duration, max(e, s + 0.5))
            for label in video_classes:
                pred_rows.append((video, s, e, label, float(rng.random())))
    thresholds = threshold_preset("activitynet")
    ours = evaluate_detections(make_gt(gt_rows), preds(pred_rows), mode="anet", thresholds=thresholds, max_dets=None)
    assert len(thresholds) == 10 and thresholds[0] == 0.5 and thresholds[-1] == 0.95
    assert np.allclose(ours["mAP"], _anet_detection_ap(gt_rows, pred_rows, thresholds), atol=1e-12)
    assert 0.05 < ours["average_mAP"] < 0.95  # neither trivial nor perfect: the matching decides it
