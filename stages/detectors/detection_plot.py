"""A picture of one video's detections for `tal-pipeline detect --plot`: the top detections on a time line."""
from __future__ import annotations

from pathlib import Path


def plot_detections(path: str | Path, video: str, detections: list[dict], duration: float, top: int = 10,
                    title: str = "") -> None:
    """The top-`top` detections of one video on a time line, one row per detection, opacity = score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dets = sorted(detections, key=lambda d: -float(d["score"]))[:top]
    labels = sorted({d["label"] for d in dets})
    colour = {lab: plt.cm.tab10(i % 10) for i, lab in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(dets), 1) + 1.4))
    for i, d in enumerate(dets):
        s, e = d["segment"]
        score = min(max(float(d["score"]), 0.0), 1.0)
        ax.barh(i, e - s, left=s, height=0.7, color=colour[d["label"]], alpha=0.15 + 0.85 * score,
                edgecolor="k", lw=0.3)
        ax.text(e, i, f" {d['label']} {score:.2f}", va="center", fontsize=6)
    ax.set_yticks(range(len(dets)), [f"#{i + 1}" for i in range(len(dets))], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(float(duration), 1e-6))
    ax.set_xlabel("seconds")
    if labels:
        handles = [plt.Rectangle((0, 0), 1, 1, color=colour[lab]) for lab in labels]
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.text(0.5, 0.5, "no detections", transform=ax.transAxes, ha="center", va="center")
    ax.set_title(title or f"{video}: top-{top} detections (opacity = score)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
