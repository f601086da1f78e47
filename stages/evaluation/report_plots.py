"""The report's per-video plots (docs/report.md, "PNG plots"): the similarity matrix with the ground truth, the
TSC change points and the novelty curve of S, and each variant's detections on a time line."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tal_pipeline.stages.evaluation.variant import Variant, row_order, variant_name

# Width (steps on each side) of the checkerboard novelty drawn under the similarity matrix.
NOVELTY_PLOT_WIDTH = 4


@dataclass
class ExampleInputs:
    """What the per-video plots need: test annotations, the similarity and proposals stores, detections of
    seed 0 of each variant ({Variant: {video: [{segment, label, score}]}}), how many videos."""

    annotations: object
    similarity_store: str
    proposals_store: str
    detections: Mapping[Variant, Mapping[str, list]]
    count: int = 3

    def videos(self) -> list[str]:
        """The test videos with the most ground-truth instances (ties: by id), up to `count`."""
        from tal_pipeline.storage.zarr_store import ArtifactStore

        have = set(ArtifactStore(self.similarity_store).videos()) & set(ArtifactStore(self.proposals_store).videos())
        counts = self.annotations.actions.groupby("video").size()
        ranked = sorted((v for v in counts.index if v in have), key=lambda v: (-int(counts[v]), v))
        return ranked[: self.count]


def plot_similarity(path: Path, video: str, examples: ExampleInputs) -> None:
    """The similarity matrix of one video with its change points and novelty (similarity_figure), as a PNG."""
    import matplotlib.pyplot as plt

    fig = similarity_figure(video, examples)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def similarity_figure(video: str, examples: ExampleInputs):
    """S as a heatmap, ground-truth segments as boxes on the diagonal, TSC change points of the largest scale; under
    it, on the same step axis, the checkerboard novelty of S (stages.bapg.boundary_evidence, width
    NOVELTY_PLOT_WIDTH) with the ground-truth boundaries and the same change points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from tal_pipeline.stages.bapg.boundary_evidence import novelty_curves
    from tal_pipeline.stages.bapg.proposal_store import read_scales
    from tal_pipeline.stages.data.timegrid import seconds_to_feature
    from tal_pipeline.storage.zarr_store import ArtifactStore

    array = ArtifactStore(examples.similarity_store).read(video)
    S = np.asarray(array[...], dtype=np.float32)  # (T, T); examples are test videos, drawn whole
    a = array.attrs
    T = S.shape[0]
    # The largest scale, named as the run defines it ("32/min": change points per minute; "m=10": a fixed count)
    scale, points = max(read_scales(examples.proposals_store, video), key=lambda s: len(s[1]))
    novelty = novelty_curves(S, [NOVELTY_PLOT_WIDTH])[:, 0]  # (T,): value at t = boundary between t-1 and t
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(6.4, 7.2), sharex=True, height_ratios=[4, 1], layout="constrained")
    im = ax.imshow(S, cmap="viridis", vmin=-1, vmax=1, origin="upper", aspect="auto")
    fig.colorbar(im, ax=[ax, axn], fraction=0.046, label="cosine similarity")
    for _, row in examples.annotations.segments(video).iterrows():
        s0, s1 = seconds_to_feature([row["start"], row["end"]], a["fps"], a["window"], a["stride"])
        ax.add_patch(Rectangle((s0, s0), s1 - s0, s1 - s0, fill=False, edgecolor="red", lw=1.5))
        for s in (s0, s1):
            axn.axvline(s, color="red", lw=1.0)
    for t in points:
        ax.axhline(t - 0.5, color="white", lw=0.6, ls="--")
        ax.axvline(t - 0.5, color="white", lw=0.6, ls="--")
        axn.axvline(t - 0.5, color="grey", lw=0.6, ls="--")
    axn.plot(np.arange(1, T) - 0.5, novelty[1:], color="black", lw=1.0)
    axn.set_xlim(-0.5, T - 0.5)
    axn.set_ylabel(f"novelty (k={NOVELTY_PLOT_WIDTH})", fontsize=8)
    axn.set_xlabel("feature step")
    ax.set_ylabel("feature step")
    ax.set_title(f"{video}: similarity matrix, ground truth (red),\nTSC change points at {scale}: {len(points)} in "
                 f"this video (dashed)", fontsize=8)
    return fig


def timeline_rows(video: str, examples: ExampleInputs) -> tuple[int, list[tuple[str, list[tuple]]]]:
    """(k, rows): k = the video's ground-truth actions; rows = ground truth, then each variant's k best-scored
    detections, as [(row name, [(start, end, label, score)])]."""
    gt = examples.annotations.segments(video)
    k = max(len(gt), 1)
    rows = [("ground truth", [(r["start"], r["end"], r["label"], 1.0) for _, r in gt.iterrows()])]
    for key in sorted(examples.detections, key=row_order):
        dets = sorted(examples.detections[key].get(video, []), key=lambda d: -d["score"])[:k]
        rows.append((variant_name(key), [(d["segment"][0], d["segment"][1], d["label"], d["score"]) for d in dets]))
    return k, rows


def plot_timeline(path: Path, video: str, examples: ExampleInputs) -> None:
    """Ground truth and each variant's detections of one video on a time line (timeline_figure), as a PNG."""
    import matplotlib.pyplot as plt

    fig = timeline_figure(video, examples)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timeline_figure(video: str, examples: ExampleInputs):
    """Ground truth and each variant's detections of one video on a time line, as many per variant as the video
    has ground-truth actions (the best-scored). Each row has one lane per class, so classes never overlap and
    keep their colour (opaque bars; a legend names them); a bar's height is its score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k, rows = timeline_rows(video, examples)
    labels = sorted({seg[2] for _, segs in rows for seg in segs})
    palette = plt.cm.tab10 if len(labels) <= 10 else plt.cm.tab20
    colour = {lab: palette(i % palette.N) for i, lab in enumerate(labels)}
    lane = 0.84 / max(len(labels), 1)  # a row spans [i - 0.42, i + 0.42], one lane per class
    fig, ax = plt.subplots(figsize=(9, (0.22 * len(labels) + 0.3) * len(rows) + 1.4))
    for i, (_, segs) in enumerate(rows):
        for s, e, lab, score in sorted(segs, key=lambda seg: seg[3]):  # the best-scored drawn last
            top = i - 0.42 + lane * labels.index(lab)
            height = lane * (0.25 + 0.75 * float(np.clip(score, 0.0, 1.0)))
            ax.barh(top + (lane - height) / 2, e - s, left=s, height=height, align="edge",  # centred in its lane
                    color=colour[lab], edgecolor="black", lw=0.4)
        if i:
            ax.axhline(i - 0.5, color="0.8", lw=0.6)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, examples.annotations.duration(video))
    ax.set_xlabel("seconds")
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=colour[lab], edgecolor="black", lw=0.4) for lab in labels]
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="class",
              title_fontsize=7)
    ax.set_title(f"{video}: ground truth and each method's {k} best detections ({k} = ground-truth actions), "
                 f"seed 0;\none lane per class, bar height = score", fontsize=9)
    fig.tight_layout()
    return fig
