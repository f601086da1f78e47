"""The results report: report.md, report.json and PNG plots (the BAPG paper's Tables I and IV, the encoder's
positive vs hard-negative similarity, and pictures of a few test videos).

report.json:
    {"results": [{"detector": str, "bapg": bool, "untrained": bool, "seeds": [int], "mAP": {"0.3": [mean, std], ...},
                  "average_mAP": [mean, std], "per_seed_average_mAP": [float]}, ...],
     "evaluation": {"mode": str, "thresholds": [float], "max_dets": int},
     "proposal_recall": {"<m>": {"n_gt", "proposals_per_video", "recall@0.5", "recall@0.7", "AR@<AN>"...}, "all": ...},
     "encoder": {"before": {...}, "after": {...}, ...},
     "plots": [file names], "artifacts": {input name: artifact folder}}
mAP values are fractions in [0, 1]; std is the population std over seeds (0 for one seed).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np


def _key(t: float) -> str:
    """Threshold as a JSON key without float drift: 0.3 -> "0.3", 0.55 -> "0.55"."""
    return f"{round(float(t), 2):g}"


def aggregate_results(evaluations: list[dict]) -> list[dict]:
    """Group per-seed evaluations by (detector, bapg, untrained): mean and std over seeds, rows in that order."""
    groups: dict[tuple[str, bool, bool], list[dict]] = {}
    for ev in evaluations:
        v = ev["variant"]
        groups.setdefault((v["detector"], bool(v["bapg"]), bool(v.get("untrained", False))), []).append(ev)
    rows = []
    for (detector, bapg, untrained), evs in sorted(groups.items()):
        evs = sorted(evs, key=lambda e: e["variant"]["seed"])
        thresholds = evs[0]["thresholds"]
        maps = np.array([e["mAP"] for e in evs], dtype=np.float64)  # (seeds, thresholds)
        avg = np.array([e["average_mAP"] for e in evs], dtype=np.float64)  # (seeds,)
        rows.append({
            "detector": detector, "bapg": bapg, "untrained": untrained,
            "seeds": [int(e["variant"]["seed"]) for e in evs],
            "mAP": {_key(t): [float(maps[:, i].mean()), float(maps[:, i].std())] for i, t in enumerate(thresholds)},
            "average_mAP": [float(avg.mean()), float(avg.std())],
            "per_seed_average_mAP": avg.tolist(),
        })
    return rows


def results_markdown(rows: list[dict]) -> str:
    """Table I: one row per detector (+ BAPG), mAP (%) per tIoU and the average, mean +- std over seeds."""
    if not rows:
        return "_no detector results_\n"
    keys = list(rows[0]["mAP"])
    head = "| method | seeds | " + " | ".join(f"mAP@{k}" for k in keys) + " | avg |\n"
    head += "|---|---|" + "---|" * (len(keys) + 1) + "\n"

    def cell(ms):
        return f"{100 * ms[0]:.1f} ± {100 * ms[1]:.1f}"

    body = ""
    for r in rows:
        name = r["detector"] + (" + BAPG" if r["bapg"] else "") + (" (untrained)" if r.get("untrained") else "")
        body += f"| {name} | {len(r['seeds'])} | " + " | ".join(cell(r["mAP"][k]) for k in keys)
        body += f" | **{cell(r['average_mAP'])}** |\n"
    return head + body


def recall_markdown(recall: list[dict]) -> str:
    """Table IV: proposal recall per m (and all m together)."""
    if not recall:
        return "_no proposal recall (no test video with ground truth)_\n"
    cols = [c for c in recall[0] if c != "m"]
    text = "| m | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    for row in recall:
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        text += f"| {row['m']} | " + " | ".join(cells) + " |\n"
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


@dataclass
class ExampleInputs:
    """What the per-video plots need: test annotations, the similarity and proposals stores, detections of
    seed 0 of each variant ({"<detector>|<0/1 bapg>|0": {video: [{segment, label, score}]}}), how many videos."""

    annotations: object
    similarity_store: str
    proposals_store: str
    detections: Mapping[str, Mapping[str, list]]
    count: int = 3

    def videos(self) -> list[str]:
        """The test videos with the most ground-truth instances (ties: by id), up to `count`."""
        from storage.zarr_store import ArtifactStore

        have = set(ArtifactStore(self.similarity_store).videos()) & set(ArtifactStore(self.proposals_store).videos())
        counts = self.annotations.actions.groupby("video").size()
        ranked = sorted((v for v in counts.index if v in have), key=lambda v: (-int(counts[v]), v))
        return ranked[: self.count]


def plot_similarity(path: Path, video: str, examples: ExampleInputs) -> None:
    """S as a heatmap, ground-truth segments as boxes on the diagonal, TSC change points of the largest m."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from stages.proposals import read_change_points
    from stages.timegrid import seconds_to_feature
    from storage.zarr_store import ArtifactStore

    array = ArtifactStore(examples.similarity_store).read(video)
    S = np.asarray(array[...], dtype=np.float32)  # (T, T); examples are test videos, drawn whole
    a = array.attrs
    cps, _ = read_change_points(examples.proposals_store, video)
    m = max(cps)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(S, cmap="viridis", vmin=-1, vmax=1, origin="upper")
    fig.colorbar(im, ax=ax, fraction=0.046, label="cosine similarity")
    for _, row in examples.annotations.segments(video).iterrows():
        s0, s1 = seconds_to_feature([row["start"], row["end"]], a["fps"], a["window"], a["stride"])
        ax.add_patch(Rectangle((s0, s0), s1 - s0, s1 - s0, fill=False, edgecolor="red", lw=1.5))
    for t in cps[m]:
        ax.axhline(t - 0.5, color="white", lw=0.6, ls="--")
        ax.axvline(t - 0.5, color="white", lw=0.6, ls="--")
    ax.set_title(f"{video}: similarity matrix, ground truth (red), TSC change points m={m} (dashed)", fontsize=8)
    ax.set_xlabel("feature step")
    ax.set_ylabel("feature step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_timeline(path: Path, video: str, examples: ExampleInputs, top: int = 10) -> None:
    """Ground truth and each variant's top-scored detections of one video on a time line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt = examples.annotations.segments(video)
    labels = sorted(set(gt["label"]) | {d["label"] for dets in examples.detections.values()
                                         for d in dets.get(video, [])[:top]})
    colour = {lab: plt.cm.tab10(i % 10) for i, lab in enumerate(labels)}
    rows = [("ground truth", [(r["start"], r["end"], r["label"], 1.0) for _, r in gt.iterrows()])]
    for key in sorted(examples.detections):
        detector, bapg, _ = key.split("|")
        dets = examples.detections[key].get(video, [])[:top]
        rows.append((detector + (" + BAPG" if bapg == "1" else ""),
                     [(d["segment"][0], d["segment"][1], d["label"], d["score"]) for d in dets]))
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.2))
    for i, (_, segs) in enumerate(rows):
        for s, e, lab, score in segs:
            ax.barh(i, e - s, left=s, height=0.7, color=colour[lab], alpha=0.25 + 0.75 * float(score), edgecolor="k",
                    lw=0.3)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, examples.annotations.duration(video))
    ax.set_xlabel("seconds")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[lab]) for lab in labels]
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f"{video}: ground truth vs top-{top} detections (opacity = score), seed 0", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(folder: str | Path, evaluations: list[dict], recall: list[dict], encoder: Mapping,
                 examples: ExampleInputs | None = None, artifacts: Mapping | None = None) -> dict:
    """Write report.md, report.json and the PNGs into `folder`; returns the report.json payload."""
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
    payload = {
        "results": rows,
        "evaluation": {"mode": first.get("report", {}).get("mode", "anet"), "thresholds": first.get("thresholds", []),
                       "max_dets": first.get("report", {}).get("max_dets")},
        "proposal_recall": {str(r["m"]): {k: v for k, v in r.items() if k != "m"} for r in recall},
        "encoder": dict(encoder),
        "plots": plots,
        "artifacts": dict(artifacts or {}),
    }
    (folder / "report.json").write_text(json.dumps(payload, indent=1))
    md = ["# Results", "",
          f"Average over tIoU {payload['evaluation']['thresholds']} ({payload['evaluation']['mode']} mode, at most "
          f"{payload['evaluation']['max_dets']} detections per video); mAP in %, mean ± std over seeds.", "",
          results_markdown(rows), "## Proposal recall of TSC (test subset)", "", recall_markdown(recall),
          "## Contrastive encoder (held-out videos)", "", encoder_markdown(encoder)]
    if plots:
        md += ["## Examples", ""] + [f"![{p}]({p})" for p in plots]
    (folder / "report.md").write_text("\n".join(md) + "\n")
    return payload
