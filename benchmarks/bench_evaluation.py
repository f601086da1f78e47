"""Detection mAP speed: vectorised evaluator against the plain-Python per-class loop, THUMOS14-sized.

    PYTHONPATH=. python benchmarks/bench_evaluation.py [--repeats 3] [--seed 0]

Data: the THUMOS14 test GT (212 videos, 3358 actions, 20 classes, Ambiguous segments) from
../shared/data/thumos14/thumos14_anet_style.json when present, otherwise a synthetic GT of the same
size; 200 detections per video (42,400 in all): half jittered copies of GT segments (label kept 80% of
the time), half random segments, scores on a 0.01 grid (so ties happen). 5 thresholds (0.3:0.1:0.7),
cap 200 per video. Both modes are timed; each figure is the best of --repeats calls, after one warm-up
call that loads the Numba cache. The results of both implementations must agree (np.allclose).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tal_pipeline.stages.evaluation.mean_ap import PRED_COLUMNS, evaluate_detections  # noqa: E402
from tal_pipeline.storage.annotations import INSTANCE_COLUMNS, Annotations, load_annotations  # noqa: E402
from tests.reference_evaluation import evaluate_detections_reference  # noqa: E402

GT_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14" / "thumos14_anet_style.json"
PER_VIDEO = 200


def synthetic_gt(rng, videos: int = 212, classes: int = 20) -> Annotations:
    """THUMOS14-like GT: ~16 actions of 1-2 classes per video, a few Ambiguous segments."""
    names = [f"video_test_{i:07d}" for i in range(videos)]
    durations = rng.uniform(30, 600, size=videos)
    rows = []
    for name, duration in zip(names, durations):
        for label in rng.choice(classes, size=int(rng.integers(1, 3)), replace=False):
            for _ in range(int(rng.integers(3, 16))):
                start = round(float(rng.uniform(0, duration - 10)), 1)
                end = start + round(float(rng.uniform(0.5, 9)), 1)
                rows.append((name, "test", f"class{label:02d}", start, end, False))
        if rng.random() < 0.3:
            start = round(float(rng.uniform(0, duration - 10)), 1)
            rows.append((name, "test", "Ambiguous", start, start + 3.0, True))
    videos_table = pd.DataFrame({"video": names, "subset": "test", "duration": durations, "fps": 30.0})
    return Annotations(videos_table, pd.DataFrame(rows, columns=INSTANCE_COLUMNS), "synthetic")


def load_gt(rng) -> tuple[Annotations, str]:
    if GT_FILE.is_file():
        return load_annotations(GT_FILE, beyond_duration="keep").subset("test"), f"THUMOS14 test GT ({GT_FILE})"
    return synthetic_gt(rng), "synthetic GT (../shared absent)"


def predictions(gt: Annotations, rng) -> pd.DataFrame:
    """PER_VIDEO detections per GT video: jittered GT copies and random segments."""
    actions, labels = gt.actions, np.array(gt.labels)
    duration = gt.videos.set_index("video")["duration"].fillna(300.0)
    frames = []
    for video, group in actions.groupby("video"):
        half = PER_VIDEO // 2
        pick = group.iloc[rng.integers(0, len(group), size=half)]
        length = (pick["end"] - pick["start"]).to_numpy()
        start = np.maximum(0, pick["start"].to_numpy() + rng.normal(0, 0.3, half) * length)  # (half,)
        end = np.maximum(start, pick["end"].to_numpy() + rng.normal(0, 0.3, half) * length)
        label = np.where(rng.random(half) < 0.8, pick["label"].to_numpy(), rng.choice(labels, half))
        r_start = rng.uniform(0, duration[video], PER_VIDEO - half)  # (PER_VIDEO - half,)
        r_end = r_start + rng.exponential(5, PER_VIDEO - half)
        frames.append(pd.DataFrame({
            "video": video, "start": np.concatenate([start, r_start]), "end": np.concatenate([end, r_end]),
            "label": np.concatenate([label, rng.choice(labels, PER_VIDEO - half)]),
            "score": np.round(rng.random(PER_VIDEO), 2),
        }))
    return pd.concat(frames, ignore_index=True)[PRED_COLUMNS]


def best_time(fn, repeats: int) -> tuple[float, dict]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def same(a: dict, b: dict) -> bool:
    return (
        np.allclose(a["mAP"], b["mAP"], atol=1e-12)
        and np.allclose(list(a["per_class_AP"].values()), list(b["per_class_AP"].values()), atol=1e-12)
        and all(np.allclose(a["recall"][k], b["recall"][k], atol=1e-12) for k in b["recall"])
        and a["report"]["dropped_by_cap"] == b["report"]["dropped_by_cap"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    gt, source = load_gt(rng)
    preds = predictions(gt, rng)
    print(f"{source}: {gt.videos.shape[0]} videos, {len(gt.actions)} actions, {len(gt.labels)} classes; "
          f"{len(preds)} detections, thresholds 0.3:0.1:0.7, max_dets 200")
    evaluate_detections(gt, preds.head(10))  # warm-up: Numba cache load
    for mode in ("anet", "thumos14"):
        t_ours, ours = best_time(lambda: evaluate_detections(gt, preds, mode=mode), args.repeats)
        t_ref, ref = best_time(lambda: evaluate_detections_reference(gt, preds, mode=mode), max(1, args.repeats // 3))
        assert same(ours, ref), f"{mode}: vectorised and reference results differ"
        print(f"{mode:>8}: vectorised {t_ours:.3f} s, reference loop {t_ref:.3f} s, speed-up {t_ref / t_ours:.1f}x; "
              f"average mAP {ours['average_mAP']:.4f} (identical: True)")
        assert t_ours < 1.0, f"{mode}: vectorised evaluator took {t_ours:.3f} s (target < 1 s)"


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_evaluation", main)  # --no-readme: print only
