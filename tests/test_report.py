"""stages.report on hand-made evaluations: row grouping and order, paired differences against the baseline,
training health in report.json and report.md, runs without a health record, and incomplete variant records."""
import json

import pytest

from tal_pipeline.stages.evaluation.report import aggregate_results, paired_differences, results_markdown, write_report
from tal_pipeline.stages.evaluation.variant import Variant

THRESHOLDS = [0.3, 0.5, 0.7]
HEALTHY = {"healthy": True, "problems": [], "loss_first_epoch": 2.0, "loss_last_epoch": 0.5, "positive_share": 1.0}
RECALL = [{"scale": "all", "n_gt": 4, "recall@0.5": 0.75}]
ENCODER = {"after": {"positive": 0.9, "hard_negative": 0.2, "easy_negative": 0.0, "gap": 0.7}}

# Baseline mAP per seed (tIoU 0.3, 0.5, 0.7), the same for both detectors.
BASE = {0: [0.50, 0.40, 0.30], 1: [0.60, 0.50, 0.40], 2: [0.70, 0.60, 0.50]}
# afsd + BAPG: differences to the baseline per seed are (+2, +3, +1), (+3, +2, -2), (+1, +4, 0) points.
AFSD_BAPG = {0: [0.52, 0.43, 0.31], 1: [0.63, 0.52, 0.38], 2: [0.71, 0.64, 0.50]}


def evaluation(detector, seed, maps, bapg=False, source=None, untrained=False, health=HEALTHY):
    variant = Variant.of(detector, bapg, source, seed, untrained).record()
    ev = {"variant": variant, "thresholds": THRESHOLDS, "mAP": list(maps), "average_mAP": sum(maps) / len(maps),
          "report": {"mode": "anet", "max_dets": 200}}
    if health is not None:
        ev["health"] = dict(health)
    return ev


def grid(unhealthy=None):
    """2 detectors x {baseline, + BAPG, + BAPG random} x seeds 0..2 (listed out of order on purpose).
    afsd random = baseline - 1 point; actionformer + BAPG = baseline + 5 points, random = baseline."""
    evs = []
    for s in (2, 0, 1):
        evs += [evaluation("afsd", s, [m - 0.01 for m in BASE[s]], True, "random"),
                evaluation("afsd", s, AFSD_BAPG[s], True, "tsc"),
                evaluation("afsd", s, BASE[s]),
                evaluation("actionformer", s, [m + 0.05 for m in BASE[s]], True, "tsc"),
                evaluation("actionformer", s, BASE[s], True, "random"),
                evaluation("actionformer", s, BASE[s])]
    if unhealthy:
        for ev in evs:
            v = ev["variant"]
            if (v["detector"], v.get("bapg_source"), v["seed"]) == unhealthy:
                ev["health"] = {"healthy": False, "problems": ["loss did not decrease (1.20 -> 1.25)",
                                                               "positive_share 0.00"],
                                "loss_first_epoch": 1.2, "loss_last_epoch": 1.25, "positive_share": 0.0}
    return evs


def test_rows_named_and_ordered_per_detector():
    evs = grid() + [evaluation("afsd", 0, [0.1, 0.1, 0.1], untrained=True),
                    evaluation("afsd", 0, [0.9, 0.9, 0.9], True, "oracle"),
                    evaluation("afsd", 0, [0.5, 0.4, 0.3], True, "raw")]
    rows = aggregate_results(evs)
    assert [r["name"] for r in rows] == [
        "actionformer", "actionformer + BAPG", "actionformer + BAPG (random change points)",
        "afsd", "afsd + BAPG", "afsd + BAPG (raw features, no encoder)", "afsd + BAPG (random change points)",
        "afsd + BAPG (ground-truth boundaries, oracle)", "afsd (untrained)"]
    assert [r["bapg_source"] for r in rows[3:]] == [None, "tsc", "raw", "random", "oracle", None]
    assert [r["seeds"] for r in rows[:5]] == [[0, 1, 2]] * 5
    afsd = rows[3]
    assert afsd["mAP"]["0.3"] == pytest.approx([0.6, (2 / 300) ** 0.5])
    assert afsd["per_seed_mAP"]["0.7"] == pytest.approx([0.3, 0.4, 0.5])
    assert afsd["per_seed_average_mAP"] == pytest.approx([0.4, 0.5, 0.6])
    assert afsd["health"] == {"healthy_runs": 3, "unhealthy_runs": 0, "unknown": 0,
                              "per_seed": [{"seed": s, "healthy": True, "problems": []} for s in (0, 1, 2)]}
    table = results_markdown(rows)
    assert "| afsd + BAPG (ground-truth boundaries, oracle) | 1 | 90.0 ± 0.0 |" in table
    assert table.splitlines()[0].endswith("| avg | healthy |")
    assert "| **50.0 ± 8.2** | 3/3 |" in table


def test_paired_differences_by_hand(tmp_path):
    payload = write_report(tmp_path, grid(), RECALL, ENCODER)
    pairs = {p["variant"]: p for p in payload["paired_differences"]}
    assert list(pairs) == ["actionformer + BAPG", "actionformer + BAPG (random change points)",
                           "afsd + BAPG", "afsd + BAPG (random change points)"]
    bapg = pairs["afsd + BAPG"]
    assert (bapg["detector"], bapg["bapg_source"], bapg["seeds"]) == ("afsd", "tsc", [0, 1, 2])
    # tIoU 0.3: (+2, +3, +1) -> mean 2, population std sqrt(2/3); 0.5: (+3, +2, +4); 0.7: (+1, -2, 0)
    d3, d5, d7 = (bapg["mAP"][k] for k in ("0.3", "0.5", "0.7"))
    assert d3["per_seed"] == pytest.approx([0.02, 0.03, 0.01])
    assert (d3["mean"], d3["std"], d3["improved"], d3["n"]) == (pytest.approx(0.02), pytest.approx(0.0081650, abs=1e-7),
                                                                3, 3)
    assert (d5["mean"], d5["std"], d5["improved"]) == (pytest.approx(0.03), pytest.approx(0.0081650, abs=1e-7), 3)
    assert (d7["mean"], d7["std"], d7["improved"]) == (pytest.approx(-0.01 / 3), pytest.approx(0.0124722, abs=1e-7),
                                                       1)
    # average mAP per seed: +2, +1, +5/3 points -> mean 14/9 points
    avg = bapg["average_mAP"]
    assert avg["per_seed"] == pytest.approx([0.02, 0.01, 0.05 / 3])
    assert (avg["mean"], avg["std"], avg["improved"], avg["n"]) == (pytest.approx(0.14 / 9),
                                                                    pytest.approx(0.0041574, abs=1e-7), 3, 3)
    rnd = pairs["afsd + BAPG (random change points)"]["average_mAP"]
    assert (rnd["mean"], rnd["std"], rnd["improved"]) == (pytest.approx(-0.01), pytest.approx(0.0, abs=1e-12), 0)
    af = pairs["actionformer + BAPG"]["mAP"]["0.5"]
    assert (af["mean"], af["improved"], af["n"]) == (pytest.approx(0.05), 3, 3)
    same = pairs["actionformer + BAPG (random change points)"]["average_mAP"]
    assert (same["mean"], same["std"], same["improved"]) == (0.0, 0.0, 0)  # no change is not an improvement
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(payload))

    md = (tmp_path / "report.md").read_text()
    assert "## Paired differences (+BAPG − baseline, same detector and seed), mAP points" in md
    assert ("| afsd + BAPG | 3 | +2.0 ± 0.8 (3/3) | +3.0 ± 0.8 (3/3) | -0.3 ± 1.2 (1/3) | **+1.6 ± 0.4 (3/3)** |"
            in md)
    assert "| afsd + BAPG (random change points) | 3 | -1.0 ± 0.0 (0/3) |" in md
    assert "| actionformer + BAPG (random change points) | 3 | +0.0 ± 0.0 (0/3) |" in md
    assert "mean − std > 0: improves over seeds" in md
    assert "All 18 detector runs passed the training health check (" in md and "unhealthy run" not in md


def test_unhealthy_run_is_warned_counted_and_kept(tmp_path):
    payload = write_report(tmp_path, grid(unhealthy=("afsd", "random", 1)), RECALL, ENCODER)
    row = next(r for r in payload["results"] if r["name"] == "afsd + BAPG (random change points)")
    assert (row["health"]["healthy_runs"], row["health"]["unhealthy_runs"], row["health"]["unknown"]) == (2, 1, 0)
    assert row["health"]["per_seed"][1] == {"seed": 1, "healthy": False,
                                            "problems": ["loss did not decrease (1.20 -> 1.25)", "positive_share 0.00"]}
    # still in the mean: seeds 0..2 of baseline - 1 point
    assert row["seeds"] == [0, 1, 2] and row["average_mAP"][0] == pytest.approx(0.49)
    pair = next(p for p in payload["paired_differences"] if p["variant"] == row["name"])
    assert pair["seeds"] == [0, 1, 2] and pair["average_mAP"]["n"] == 3
    assert payload["health"]["runs"] == 18 and payload["health"]["unhealthy"] == 1
    assert payload["health"]["unhealthy_runs"] == [{"detector": "afsd", "variant": row["name"], "seed": 1,
                                                    "problems": row["health"]["per_seed"][1]["problems"]}]
    md = (tmp_path / "report.md").read_text()
    assert ("⚠ unhealthy run: afsd + BAPG (random change points) seed 1: loss did not decrease (1.20 -> 1.25); "
            "positive_share 0.00") in md
    assert "| **49.0 ± 8.2** | 2/3 ⚠ |" in md
    assert "17 of 18 detector runs passed" in md and "All 18" not in md


def test_runs_without_health_are_unknown_and_incomplete_variants_refused(tmp_path):
    new = grid()
    old = [ev for ev in grid() if ev["variant"]["bapg_source"] != "random"]
    for ev in old:
        ev.pop("health")
    rows = aggregate_results(old)
    assert [(r["name"], r["bapg_source"]) for r in rows] == [("actionformer", None), ("actionformer + BAPG", "tsc"),
                                                             ("afsd", None), ("afsd + BAPG", "tsc")]
    by_name = {r["name"]: r for r in aggregate_results(new)}
    for r in rows:  # the same numbers as with the new fields
        assert r["mAP"] == by_name[r["name"]]["mAP"] and r["average_mAP"] == by_name[r["name"]]["average_mAP"]
        assert r["health"]["unknown"] == 3 and r["health"]["healthy_runs"] == 0
        assert [p["healthy"] for p in r["health"]["per_seed"]] == [None] * 3
    payload = write_report(tmp_path, old, RECALL, ENCODER)
    assert [p["variant"] for p in payload["paired_differences"]] == ["actionformer + BAPG", "afsd + BAPG"]
    assert payload["paired_differences"][1]["average_mAP"]["mean"] == pytest.approx(0.14 / 9)
    assert payload["health"] == {"runs": 12, "healthy": 0, "unhealthy": 0, "unknown": 12, "unhealthy_runs": []}
    md = (tmp_path / "report.md").read_text()
    assert "| **50.0 ± 8.2** | ? |" in md and "12 of 12 detector runs were not checked" in md
    assert "detector runs passed" not in md
    partial = grid()
    del partial[4]["variant"]["bapg_groups"]
    with pytest.raises(ValueError, match=r"evaluation 4: the variant record lacks \['bapg_groups'\]"):
        aggregate_results(partial)


def test_pairs_only_on_common_seeds():
    evs = [evaluation("afsd", s, BASE[s]) for s in (0, 1, 2)]
    evs += [evaluation("afsd", s, [m + 0.1 * s for m in BASE[min(s, 2)]], True) for s in (1, 2, 3)]
    evs += [evaluation("afsd", 7, [0.9] * 3, True, "oracle")]  # no common seed
    evs += [evaluation("i3d_only", 0, [0.5] * 3, True)]  # no baseline row at all: not paired
    pairs = paired_differences(aggregate_results(evs))
    assert [p["variant"] for p in pairs] == ["afsd + BAPG", "afsd + BAPG (ground-truth boundaries, oracle)"]
    common, none = pairs
    assert common["seeds"] == [1, 2]
    assert common["average_mAP"]["per_seed"] == pytest.approx([0.1, 0.2])
    assert (common["average_mAP"]["mean"], common["average_mAP"]["std"]) == (pytest.approx(0.15), pytest.approx(0.05))
    assert common["average_mAP"]["improved"] == 2 and common["mAP"]["0.3"]["n"] == 2
    assert none["seeds"] == [] and none["average_mAP"] == {"mean": None, "std": None, "improved": 0, "n": 0,
                                                           "per_seed": []}


def _accuracy_rows(f1_by_scale: dict[str, float], subsets=("test", "train")) -> list[dict]:
    """boundary_accuracy.json rows with n_true 10 and n_pred 10, so precision = recall = F1 = tp / 10."""
    rows = []
    for sub in subsets:
        for scale, f1 in f1_by_scale.items():
            for k in (1, 2):
                tp = round(10 * f1) + (k - 1)  # one more hit at +-2
                rows.append({"subset": sub, "scale": scale, "tolerance": k, "tp": tp, "n_pred": 10, "n_true": 10,
                             "precision": tp / 10, "recall": tp / 10, "f1": tp / 10})
    return rows


def test_boundary_accuracy_table_has_a_row_per_source_and_scale(tmp_path):
    from tal_pipeline.stages.evaluation.report_boundaries import boundary_accuracy_section

    tables = {"tsc": _accuracy_rows({"8/min": 0.6, "16/min": 0.5}),
              "raw": _accuracy_rows({"8/min": 0.4, "16/min": 0.3}),
              "random": _accuracy_rows({"8/min": 0.2, "16/min": 0.1}),
              "oracle": _accuracy_rows({"8/min": 1.0, "16/min": 1.0}, subsets=("validation", "test"))}
    tables["oracle"] = [{**r, "tp": 10, "precision": 1.0, "recall": 1.0, "f1": 1.0} for r in tables["oracle"]]
    section = boundary_accuracy_section(tables, {"test": "test", "train": "validation"},
                                        {s: f"proposals-{s}.zarr" for s in tables})
    payload = write_report(tmp_path, grid(), RECALL, ENCODER, boundary_accuracy=section)
    acc = json.loads((tmp_path / "report.json").read_text())["boundary_accuracy"]
    assert acc == json.loads(json.dumps(payload["boundary_accuracy"]))
    assert acc["tolerances"] == [1, 2] and acc["subsets"] == {"test": "test", "train": "validation"}
    assert list(acc["sources"]) == ["tsc", "raw", "random", "oracle"]
    assert acc["sources"]["tsc"]["store"] == "proposals-tsc.zarr"
    assert acc["sources"]["tsc"]["test"]["8/min"]["2"] == {"precision": 0.7, "recall": 0.7, "f1": 0.7, "tp": 7,
                                                           "n_pred": 10, "n_true": 10}
    assert acc["sources"]["tsc"]["train"] == {}  # its rows name the "train" subset, not this dataset's "validation"
    assert acc["sources"]["oracle"]["train"]["16/min"]["1"]["f1"] == 1.0
    md = (tmp_path / "report.md").read_text()
    section_md = md.split("## Boundary accuracy of each boundary source per scale")[1].split("##")[0]
    rows = [line for line in section_md.splitlines() if line.startswith("| ") and not line.startswith("| source")]
    assert [tuple(c.strip() for c in line.split("|")[1:3]) for line in rows] == [
        (s, scale) for s in ("tsc", "raw", "random", "oracle") for scale in ("8/min", "16/min")]
    assert "| tsc | 8/min | 0.600 (0.60 / 0.60) | 0.700 (0.70 / 0.70) | — | — |" in section_md
    assert "| oracle | 16/min | 1.000 (1.00 / 1.00) | 1.000 (1.00 / 1.00) | 1.000 (1.00 / 1.00) |" in section_md
    assert "test (test): 10 ground-truth boundaries" in section_md


def test_report_without_boundary_accuracy_says_so(tmp_path):
    payload = write_report(tmp_path, grid(), RECALL, ENCODER)
    assert payload["boundary_accuracy"] == {"tolerances": [], "subsets": {}, "sources": {}}
    assert "_no boundary accuracy" in (tmp_path / "report.md").read_text()


def test_group_ablation_rows_are_named_ordered_and_paired(tmp_path):
    every = ["pooled", "boundary", "novelty", "strength"]
    evs = [evaluation("afsd", s, BASE[s]) for s in (0, 1, 2)]
    evs += [evaluation("afsd", s, AFSD_BAPG[s], True, "tsc") for s in (0, 1, 2)]
    for groups, delta in ((every, 0.03), (["pooled"], -0.02), (["boundary"], 0.01)):
        for s in (0, 1, 2):
            ev = evaluation("afsd", s, [m + delta for m in BASE[s]], True, "tsc")
            ev["variant"]["bapg_groups"] = list(groups)
            evs.append(ev)
    same = evaluation("afsd", 0, [0.9] * 3, True, "random")
    same["variant"]["bapg_groups"] = ["boundary", "pooled"]  # the default groups, in another order
    evs.append(same)
    payload = write_report(tmp_path, evs, RECALL, ENCODER)
    rows = payload["results"]
    assert [r["name"] for r in rows] == ["afsd", "afsd + BAPG", "afsd + BAPG [pooled]", "afsd + BAPG [boundary]",
                                         "afsd + BAPG [pooled, boundary, novelty, strength]",
                                         "afsd + BAPG (random change points)"]
    assert [r["bapg_groups"] for r in rows] == [None, ["pooled", "boundary"], ["pooled"], ["boundary"], every,
                                                ["pooled", "boundary"]]
    assert all(r["seeds"] == [0, 1, 2] for r in rows[:5])
    pairs = {p["variant"]: p for p in payload["paired_differences"]}
    assert pairs["afsd + BAPG [pooled]"]["average_mAP"]["mean"] == pytest.approx(-0.02)
    assert pairs["afsd + BAPG [pooled, boundary, novelty, strength]"]["average_mAP"]["per_seed"] == pytest.approx(
        [0.03] * 3)
    assert pairs["afsd + BAPG [boundary]"]["bapg_groups"] == ["boundary"]
    md = (tmp_path / "report.md").read_text()
    assert "| afsd + BAPG [pooled, boundary, novelty, strength] | 3 | +3.0 ± 0.0 (3/3) |" in md
    assert "| afsd + BAPG [pooled] | 3 | 58.0 ± 8.2 |" in md


def test_variant_records_its_groups_and_reads_them_back():
    v = Variant.of("afsd", True, "tsc", 1, bapg_groups=["strength", "pooled"])
    assert v.bapg_groups == ("pooled", "strength") and not v.default_groups
    assert v.record()["bapg_groups"] == ["pooled", "strength"] and Variant.read(v.record(), "here") == v
    plain = Variant.of("afsd", True, "tsc", 1)
    assert Variant.read(plain.record(), "here") == plain != v and plain.default_groups
    old = {"detector": "afsd", "bapg": True, "bapg_source": "tsc", "seed": 1, "untrained": False}  # no bapg_groups
    with pytest.raises(ValueError, match=r"evaluation\.json: the variant record lacks \['bapg_groups'\]"):
        Variant.read(old, "evaluation.json")
    assert Variant.of("afsd", False, bapg_groups=["pooled"]).bapg_groups is None  # a baseline has no groups
    with pytest.raises(ValueError, match="unknown channel group"):
        Variant.of("afsd", True, bapg_groups=["edges"])


def test_video_classes_of_class_agnostic_runs_are_reported(tmp_path):
    for name in ("plain", "anet"):
        (tmp_path / name).mkdir()
    plain = write_report(tmp_path / "plain", grid(), RECALL, ENCODER)
    assert "video_classes" not in plain["evaluation"]  # a multi-class run's report.json is as before
    evs = grid()
    for ev in evs:
        ev["video_classes"] = {"source": "classifier", "artifact": "video_classes-abc", "topk": 2, "classes": 3,
                               "test_top1": 0.75, "train_top1": 1.0, "settings": {"hidden": 0}}
    payload = write_report(tmp_path / "anet", evs, RECALL, ENCODER)
    assert payload["evaluation"]["video_classes"] == {"source": "classifier", "artifact": "video_classes-abc",
                                                      "topk": 2, "classes": 3, "test_top1": 0.75, "train_top1": 1.0}
    md = (tmp_path / "anet" / "report.md").read_text()
    assert "top-2 classes of video-level scores (classifier; top-1 accuracy on the test videos 75.0 %)" in md
