"""The report's per-video plots on a THUMOS-like video (real stores on disk): the similarity plot names the scale as
the run defines it (change points per minute), and the timeline shows each method's k best detections (k = the
video's ground-truth actions) in one lane per class, opaque, with a legend of the classes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from tal_pipeline.stages.bapg.similarity import write_similarity
from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.stages.evaluation.report_plots import (
    ExampleInputs,
    plot_similarity,
    plot_timeline,
    similarity_figure,
    timeline_figure,
    timeline_rows,
)
from tal_pipeline.stages.evaluation.variant import Variant
from tal_pipeline.storage.annotations import load_annotations
from tal_pipeline.storage.zarr_store import ArtifactStore

GRID = TimeGrid(fps=10.0, window=4, stride=2)  # 0.2 s per feature step
VIDEO, DURATION = "video_test_0000001", 120.0
CLASSES = ["CliffDiving", "Diving", "JavelinThrow"]


def example_inputs(folder) -> tuple[ExampleInputs, list[dict]]:
    """12 ground-truth actions of 3 classes (two overlapping) in a 120 s video, 40 detections per method, the
    similarity store and a proposals store with change points at 8 and 16 per minute (16 and 32 here)."""
    rng = np.random.default_rng(0)
    gt = [{"segment": [8.0 * i + 2, 8.0 * i + 2 + rng.uniform(2, 5)], "label": CLASSES[i % 3]} for i in range(11)]
    gt.append({"segment": [3.0, 6.0], "label": "Diving"})  # overlaps the first (CliffDiving) one
    ann_file = folder / "annotations.json"
    ann_file.write_text(json.dumps({"database": {VIDEO: {"subset": "test", "duration": DURATION,
                                                         "annotations": gt}}}))
    T = int(DURATION / 0.2)
    emb = rng.normal(size=(T, 8)).astype(np.float32)
    for a in gt:  # each action one direction: blocks on the diagonal
        s, e = (int(x / 0.2) for x in a["segment"])
        emb[s:e] += 3 * np.eye(8, dtype=np.float32)[CLASSES.index(a["label"])]
    sim = ArtifactStore(folder / "similarity-0000000000.zarr")
    sim.begin({"stage": "similarity"})
    write_similarity(sim.path, VIDEO, emb, GRID, block=256)
    sim.mark_complete([VIDEO])
    props = ArtifactStore(folder / "proposals-0000000000.zarr")
    props.begin({"stage": "proposals"})
    cps = {16: np.sort(rng.choice(np.arange(1, T), 16, replace=False)),
           32: np.sort(rng.choice(np.arange(1, T), 32, replace=False))}
    props.write_video(VIDEO, np.zeros((1, 7), np.float32), 1, ["proposal", "column"],
                      {"change_points": {str(m): c.tolist() for m, c in cps.items()},
                       "scales": [{"name": "8/min", "m": 16}, {"name": "16/min", "m": 32}]})
    props.mark_complete([VIDEO])
    detections = {}
    for variant in (Variant.of("actionformer"), Variant.of("actionformer", True)):
        starts = rng.uniform(0, DURATION - 6, 40)
        detections[variant] = {VIDEO: [{"segment": [float(s), float(s + rng.uniform(1, 6))],
                                        "label": CLASSES[int(rng.integers(3))], "score": float(rng.uniform(0, 1))}
                                       for s in starts]}
    return ExampleInputs(load_annotations(ann_file), str(sim.path), str(props.path), detections), gt


@pytest.fixture
def inputs(tmp_path):
    return example_inputs(tmp_path)


def test_similarity_title_names_the_rate_of_the_run(inputs, tmp_path):
    examples, _ = inputs
    title = similarity_figure(VIDEO, examples).axes[0].get_title()
    assert "TSC change points at 16/min: 32 in this video" in title and "m=" not in title
    plot_similarity(tmp_path / "similarity.png", VIDEO, examples)
    assert (tmp_path / "similarity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timeline_shows_k_best_per_method_in_one_opaque_lane_per_class(inputs, tmp_path):
    examples, gt = inputs
    k, rows = timeline_rows(VIDEO, examples)
    assert k == len(gt) == 12 and [len(segs) for _, segs in rows] == [12, 12, 12]
    for variant, (_, segs) in zip([None, Variant.of("actionformer"), Variant.of("actionformer", True)], rows):
        if variant is not None:  # the 12 best-scored of 40
            best = sorted(d["score"] for d in examples.detections[variant][VIDEO])[-12:]
            assert sorted(seg[3] for seg in segs) == best
    fig = timeline_figure(VIDEO, examples)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_width() > 0]
    assert len(bars) == 36
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == sorted({s[2] for _, segs in rows for s in segs})
    colours = {t.get_text(): h.get_facecolor() for t, h in zip(legend.get_texts(), legend.legend_handles)}
    assert len({c for c in colours.values()}) == len(colours)  # one colour per class
    for bar in bars:
        assert bar.get_facecolor()[3] == 1.0 and bar.get_alpha() in (None, 1.0)  # opaque: colours never blend
        assert to_rgba(bar.get_facecolor()) in {to_rgba(c) for c in colours.values()}
    for row in range(3):  # within a row, bars of different classes never share height
        mine = [b for b in bars if abs(b.get_y() + b.get_height() / 2 - row) < 0.5]
        assert len(mine) == 12
        for a in mine:
            for b in mine:
                if a.get_facecolor() != b.get_facecolor():
                    assert a.get_y() + a.get_height() <= b.get_y() or b.get_y() + b.get_height() <= a.get_y()
    assert "12 best detections" in ax.get_title()
    plot_timeline(tmp_path / "timeline.png", VIDEO, examples)
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
