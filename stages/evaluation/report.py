"""The results report: report.md, report.json and PNG plots (the BAPG paper's Tables I and IV, the encoder's
positive vs hard-negative similarity, and pictures of a few test videos).

Input: one evaluation dict per detector run (its evaluation.json): "thresholds", "mAP" (one per threshold),
"average_mAP", "report" {"mode", "max_dets", ...}, "variant" (stages.evaluation.variant.Variant.record) and
"health": the run's training health check {"healthy", "problems", "loss_first_epoch", "loss_last_epoch",
"positive_share", ...} (the TrainDetector's health.json; the Report task adds it; absent: unknown, shown as "?").
Health never removes a run from the aggregates; it is reported next to them.

Output: report.md, report.json and the PNGs, described field by field in docs/report.md (the one description
of the report.json schema: keep it in step with write_report and the functions it calls).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tal_pipeline.stages.evaluation.report_boundaries import boundary_accuracy_markdown
from tal_pipeline.stages.evaluation.report_plots import ExampleInputs, plot_similarity, plot_timeline
from tal_pipeline.stages.evaluation.variant import Variant, row_name, row_order, variant_name


def _key(t: float) -> str:
    """Threshold as a JSON key without float drift: 0.3 -> "0.3", 0.55 -> "0.55"."""
    return f"{round(float(t), 2):g}"


# The training health check's criteria in one line (the check itself belongs to the training stage).
HEALTH_CRITERIA = ("finite losses; on the training videos the trained weights' loss <= 0.7 x the initial weights' "
                   "and predicted start and end distances positive at >= 90 % of foreground locations")


def run_health(evaluation: Mapping) -> tuple[bool | None, list[str]]:
    """(healthy, problems) of one run: (None, []) when its evaluation has no health record."""
    health = evaluation.get("health")
    if not isinstance(health, Mapping) or health.get("healthy") is None:
        return None, []
    return bool(health["healthy"]), [str(p) for p in health.get("problems") or []]


def aggregate_results(evaluations: list[dict]) -> list[dict]:
    """Group per-seed evaluations by variant (all but the seed): mean and std over seeds, the per-seed values and
    the runs' health; rows per detector: baseline, + BAPG, ablations, untrained (variant.row_order)."""
    groups: dict[Variant, list[dict]] = {}
    for i, ev in enumerate(evaluations):
        groups.setdefault(Variant.read(ev["variant"], f"evaluation {i}")._replace(seed=0), []).append(ev)
    rows = []
    for key in sorted(groups, key=row_order):
        detector, bapg, source, untrained = key.detector, key.bapg, key.bapg_source, key.untrained
        channel_groups = list(key.bapg_groups) if key.bapg_groups is not None else None
        evs = sorted(groups[key], key=lambda e: e["variant"]["seed"])
        thresholds = evs[0]["thresholds"]
        maps = np.array([e["mAP"] for e in evs], dtype=np.float64)  # (seeds, thresholds)
        avg = np.array([e["average_mAP"] for e in evs], dtype=np.float64)  # (seeds,)
        per_seed = []
        for e in evs:
            healthy, problems = run_health(e)
            per_seed.append({"seed": int(e["variant"]["seed"]), "healthy": healthy, "problems": problems})
        rows.append({
            "detector": detector, "bapg": bapg, "untrained": untrained, "bapg_source": source,
            "bapg_groups": channel_groups,
            "name": variant_name(key),
            "seeds": [int(e["variant"]["seed"]) for e in evs],
            "mAP": {_key(t): [float(maps[:, i].mean()), float(maps[:, i].std())] for i, t in enumerate(thresholds)},
            "average_mAP": [float(avg.mean()), float(avg.std())],
            "per_seed_average_mAP": avg.tolist(),
            "per_seed_mAP": {_key(t): maps[:, i].tolist() for i, t in enumerate(thresholds)},
            "health": {"healthy_runs": sum(p["healthy"] is True for p in per_seed),
                       "unhealthy_runs": sum(p["healthy"] is False for p in per_seed),
                       "unknown": sum(p["healthy"] is None for p in per_seed),
                       "per_seed": per_seed},
        })
    return rows


def _difference(diffs: list[float]) -> dict:
    """Mean, population std, seeds improved (> 0) of paired differences; mean/std None for no pairs."""
    d = np.asarray(diffs, dtype=np.float64)
    return {"mean": float(d.mean()) if d.size else None, "std": float(d.std()) if d.size else None,
            "improved": int((d > 0).sum()), "n": int(d.size), "per_seed": d.tolist()}


def paired_differences(rows: list[dict]) -> list[dict]:
    """Each + BAPG row (not untrained) minus its detector's baseline row, seed by seed on the seeds both have:
    per tIoU and for the average mAP. Rows without a baseline row are left out."""
    baselines = {r["detector"]: r for r in rows if not r["bapg"] and not r["untrained"]}
    out = []
    for r in rows:
        base = baselines.get(r["detector"])
        if not r["bapg"] or r["untrained"] or base is None:
            continue
        mine = {s: i for i, s in enumerate(r["seeds"])}
        theirs = {s: i for i, s in enumerate(base["seeds"])}
        seeds = sorted(set(mine) & set(theirs))

        def diffs(values, base_values):
            return [values[mine[s]] - base_values[theirs[s]] for s in seeds]

        out.append({
            "detector": r["detector"], "variant": r["name"], "bapg_source": r["bapg_source"],
            "bapg_groups": r.get("bapg_groups"), "seeds": seeds,
            "mAP": {k: _difference(diffs(r["per_seed_mAP"][k], base["per_seed_mAP"][k]))
                    for k in r["per_seed_mAP"] if k in base["per_seed_mAP"]},
            "average_mAP": _difference(diffs(r["per_seed_average_mAP"], base["per_seed_average_mAP"])),
        })
    return out


def _health_cell(health: Mapping) -> str:
    """"3/3" healthy runs of the row, "?" when none is known, "2/3 ⚠" with an unhealthy run, "(1 ?)" unknown."""
    n = health["healthy_runs"] + health["unhealthy_runs"] + health["unknown"]
    if health["unknown"] == n:
        return "?"
    cell = f"{health['healthy_runs']}/{n}"
    if health["unknown"]:
        cell += f" ({health['unknown']} ?)"
    return cell + (" ⚠" if health["unhealthy_runs"] else "")


def results_markdown(rows: list[dict]) -> str:
    """Table I: one row per detector variant, mAP (%) per tIoU and the average, mean +- std over seeds, and how
    many of the row's runs passed the training health check."""
    if not rows:
        return "_no detector results_\n"
    keys = list(rows[0]["mAP"])
    head = "| method | seeds | " + " | ".join(f"mAP@{k}" for k in keys) + " | avg | healthy |\n"
    head += "|---|---|" + "---|" * (len(keys) + 2) + "\n"

    def cell(ms):
        return f"{100 * ms[0]:.1f} ± {100 * ms[1]:.1f}" if ms else "—"

    body = ""
    for r in rows:
        name = r.get("name") or row_name(r["detector"], r["bapg"], r.get("bapg_source"), r.get("untrained", False),
                                         r.get("bapg_groups"))
        health = r.get("health") or {"healthy_runs": 0, "unhealthy_runs": 0, "unknown": len(r["seeds"])}
        body += f"| {name} | {len(r['seeds'])} | " + " | ".join(cell(r["mAP"].get(k)) for k in keys)
        body += f" | **{cell(r['average_mAP'])}** | {_health_cell(health)} |\n"
    return head + body


def paired_markdown(pairs: list[dict]) -> str:
    """Paired differences table: mean ± std (mAP points) over seeds, (seeds improved / seeds paired)."""
    if not pairs:
        return "_no paired differences (no + BAPG row with a baseline row of the same detector)_\n"
    keys = list(pairs[0]["mAP"])

    def cell(d):
        if not d or not d["n"]:
            return "—"
        mean = 100 * d["mean"] if abs(d["mean"]) >= 5e-4 else 0.0  # no "-0.0" from float noise
        return f"{mean:+.1f} ± {100 * d['std']:.1f} ({d['improved']}/{d['n']})"

    text = "| method | seeds | " + " | ".join(f"Δ mAP@{k}" for k in keys) + " | Δ avg |\n"
    text += "|---|---|" + "---|" * (len(keys) + 1) + "\n"
    for p in pairs:
        text += f"| {p['variant']} | {len(p['seeds'])} | " + " | ".join(cell(p["mAP"].get(k)) for k in keys)
        text += f" | **{cell(p['average_mAP'])}** |\n"
    text += ("\nEach cell: mean ± std over seeds of (variant − baseline) in mAP points (seeds improved / seeds "
             "paired). mean − std > 0: improves over seeds; mean + std < 0: worse over seeds; otherwise within "
             "seed noise.\n")
    return text


def health_summary(rows: list[dict]) -> dict:
    """Runs counted by health over all rows, and every unhealthy run by name and seed."""
    counts = {k: sum(r["health"][f] for r in rows)
              for k, f in (("healthy", "healthy_runs"), ("unhealthy", "unhealthy_runs"), ("unknown", "unknown"))}
    bad = [{"detector": r["detector"], "variant": r["name"], "seed": p["seed"], "problems": p["problems"]}
           for r in rows for p in r["health"]["per_seed"] if p["healthy"] is False]
    return {"runs": sum(counts.values()), **counts, "unhealthy_runs": bad}


def health_markdown(summary: Mapping) -> str:
    """A warning line per unhealthy run; otherwise that all runs passed (and how many were not checked)."""
    lines = [f"- ⚠ unhealthy run: {b['variant']} seed {b['seed']}: {'; '.join(b['problems']) or 'no problem named'}"
             for b in summary["unhealthy_runs"]]
    checked = summary["healthy"] + summary["unhealthy"]
    if not summary["runs"]:
        return "_no detector runs_\n"
    if summary["unhealthy"]:
        lines.append(f"\n{summary['healthy']} of {summary['runs']} detector runs passed the training health check "
                     f"({HEALTH_CRITERIA}). Unhealthy runs are kept in every mean above.")
    elif checked:
        lines.append(f"All {checked} detector runs passed the training health check ({HEALTH_CRITERIA}).")
    if summary["unknown"]:
        lines.append(f"{summary['unknown']} of {summary['runs']} detector runs were not checked (shown as ?): the "
                     "untrained sanity rows, which are not trained, and any run without a health record.")
    return "\n".join(lines) + "\n"


def recall_markdown(recall: list[dict]) -> str:
    """Table IV: proposal recall per scale (a rate "8/min", a count "m=10", ...) and all scales together."""
    if not recall:
        return "_no proposal recall (no test video with ground truth)_\n"
    cols = [c for c in recall[0] if c != "scale"]
    text = "| scale | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    for row in recall:
        cells = ["" if row[c] is None or (isinstance(row[c], float) and row[c] != row[c]) else
                 f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        text += f"| {row['scale']} | " + " | ".join(cells) + " |\n"
    return text


def encoder_markdown(encoder: Mapping) -> str:
    """Mean cosine similarity of anchor to positive / hard negative / easy negative on held-out videos."""
    lines = ["| encoder | s(a, p) | s(a, hard neg) | s(a, easy neg) | gap s(a,p) - s(a,hard neg) |",
             "|---|---|---|---|---|"]
    names = {"features": "raw features (no encoder)", "before": "before training", "after": "after training"}
    for when, name in names.items():
        if when in encoder:
            e = encoder[when]
            lines.append(f"| {name} | {e['positive']:.3f} | {e['hard_negative']:.3f} | "
                         f"{e.get('easy_negative', float('nan')):.3f} | {e['gap']:.3f} |")
    return "\n".join(lines) + "\n"


def write_report(folder: str | Path, evaluations: list[dict], recall: list[dict], encoder: Mapping,
                 examples: ExampleInputs | None = None, artifacts: Mapping | None = None,
                 boundary_accuracy: Mapping | None = None) -> dict:
    """Write report.md, report.json and the PNGs into `folder`; returns the report.json payload.

    boundary_accuracy: report.json's "boundary_accuracy" (report_boundaries.boundary_accuracy_section), or None.
    """
    folder = Path(folder)
    rows = aggregate_results(evaluations)
    plots = []
    if examples is not None:
        for video in examples.videos():
            for kind, draw in (("similarity", plot_similarity), ("timeline", plot_timeline)):
                name = f"{kind}_{video}.png"
                draw(folder / name, video, examples)
                plots.append(name)
    first = evaluations[0] if evaluations else {}
    pairs = paired_differences(rows)
    health = health_summary(rows)
    payload = {
        "results": rows,
        "paired_differences": pairs,
        "health": health,
        "evaluation": {"mode": first.get("report", {}).get("mode", "anet"), "thresholds": first.get("thresholds", []),
                       "max_dets": first.get("report", {}).get("max_dets")},
        "proposal_recall": {str(r["scale"]): {k: v for k, v in r.items() if k != "scale"} for r in recall},
        "boundary_accuracy": dict(boundary_accuracy or {"tolerances": [], "subsets": {}, "sources": {}}),
        "encoder": dict(encoder),
        "plots": plots,
        "artifacts": dict(artifacts or {}),
    }
    classes = first.get("video_classes")  # class-agnostic detectors: where their classes came from
    if classes:
        payload["evaluation"]["video_classes"] = {k: classes.get(k) for k in ("source", "file", "artifact", "topk",
                                                                             "classes", "test_top1", "train_top1")
                                                  if k in classes}
    (folder / "report.json").write_text(json.dumps(payload, indent=1))
    md = ["# Results", "",
          f"Average over tIoU {payload['evaluation']['thresholds']} ({payload['evaluation']['mode']} mode, at most "
          f"{payload['evaluation']['max_dets']} detections per video); mAP in %, mean ± std over seeds; healthy: "
          "runs of the row that passed the training health check.", "",
          results_markdown(rows)]
    if classes:
        top1 = classes.get("test_top1")
        md[-1:-1] = [f"Class-agnostic detections take the top-{classes.get('topk')} classes of video-level scores "
                     f"({classes.get('source')}; top-1 accuracy on the test videos "
                     f"{'n/a' if top1 is None else f'{100 * top1:.1f} %'}), score sqrt(class x segment).", ""]
    if health["unhealthy"]:
        md += [f"⚠ {health['unhealthy']} unhealthy detector run(s), kept in the means: see Training health.", ""]
    md += ["## Paired differences (+BAPG − baseline, same detector and seed), mAP points", "", paired_markdown(pairs),
           "## Training health", "", health_markdown(health),
           "## Proposal recall of TSC per scale (test subset)", "", recall_markdown(recall),
           "## Boundary accuracy of each boundary source per scale", "",
           boundary_accuracy_markdown(payload["boundary_accuracy"]),
           "## Contrastive encoder (held-out videos)", "", encoder_markdown(encoder)]
    if plots:
        md += ["## Examples", ""] + [f"![{p}]({p})" for p in plots]
    (folder / "report.md").write_text("\n".join(md) + "\n")
    return payload
