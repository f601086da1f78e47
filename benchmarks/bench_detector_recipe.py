"""Detector recipes compared on held-out TRAINING videos (never the test split), over seeds and folds.

    PYTHONPATH=. python benchmarks/bench_detector_recipe.py --detector actionformer \
        --candidates '[{"epochs": 40}, {"epochs": 80}, {"epochs": 120}]' --seeds 3 --folds 2 [--bapg] \
        [--luigi-args "--paths-workdir runs"] [--out benchmarks/out/recipe.json]

The training videos of the configured dataset (the synthetic one by default; any --luigi-args of `luigi --module
pipeline FullRun` select another, e.g. --dataset-features ...) are split into --folds folds by sorted id; each
candidate (training settings, plus "model" / "fusion" options) is trained on the other folds and evaluated on
the held-out fold (average mAP over tIoU 0.3:0.1:0.7, anet mode), for every seed. The features (and with
--bapg the ProposalFeatures, whose training videos are cross-fitted) come from the pipeline's own stores,
built first when missing. Printed per candidate: mean ± std of the held-out average mAP over seeds x folds, the
worst run, and how many runs passed the training health check. This is how the detector defaults in
stages/detectors/training.py are chosen; the test split is not read.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def held_out_evaluation(name, features, annotations, labels, grids, train_videos, val_videos, candidate, seed,
                        bapg_channels) -> tuple[dict, dict]:
    """Train on `train_videos`, detect on `val_videos`: (the evaluation at tIoU 0.3:0.1:0.7, the checkpoint config)."""
    import pandas as pd

    from tal_pipeline.stages.detectors.detection import detect
    from tal_pipeline.stages.detectors.training import train_detector
    from tal_pipeline.stages.evaluation.mean_ap import evaluate_detections
    from tal_pipeline.storage.annotations import Annotations

    fit = {v: features[v] for v in train_videos}
    state, cfg, _ = train_detector(name, fit, annotations.actions, labels, grids, candidate, seed=seed,
                                   progress=False, bapg_channels=bapg_channels)
    val = {v: features[v] for v in val_videos}
    durations = {v: annotations.duration(v) for v in val_videos}
    results = detect(name, state, cfg, val, labels, grids, durations)
    rows = [(v, d["segment"][0], d["segment"][1], d["label"], d["score"]) for v, dets in results.items() for d in dets]
    preds = pd.DataFrame(rows, columns=["video", "start", "end", "label", "score"])
    keep = annotations.videos["video"].isin(val_videos)
    gt = Annotations(annotations.videos[keep].reset_index(drop=True),
                     annotations.instances[annotations.instances["video"].isin(val_videos)].reset_index(drop=True))
    return evaluate_detections(gt, preds, thresholds=[0.3, 0.4, 0.5, 0.6, 0.7], mode="anet"), cfg


def held_out_map(name, features, annotations, labels, grids, train_videos, val_videos, candidate, seed,
                 bapg_channels) -> tuple[float, dict]:
    ev, cfg = held_out_evaluation(name, features, annotations, labels, grids, train_videos, val_videos, candidate,
                                  seed, bapg_channels)
    return float(ev["average_mAP"]), cfg["health"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="actionformer", choices=["afsd", "actionformer", "tridet", "tadtr"])
    ap.add_argument("--candidates", default='[{}]', help="JSON list of settings (training keys, \"model\", \"fusion\")")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--bapg", action="store_true", help="train on features + ProposalFeatures (fused)")
    ap.add_argument("--bapg-source", default="tsc", choices=["tsc", "raw", "random", "oracle"])  # BOUNDARY_SOURCES
    ap.add_argument("--luigi-args", default="", help="arguments of `luigi --module pipeline FullRun` (dataset, "
                                                     "workdir, stage options)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="", help="write the table as JSON here")
    args = ap.parse_args()

    import luigi
    import torch
    from luigi.cmdline_parser import CmdlineParser

    import pipeline  # noqa: F401  (registers the tasks)
    from pipeline import dataset
    from pipeline.bapg_tasks import ProposalFeatures
    from pipeline.data_tasks import dataset_annotations, features_task
    from tal_pipeline.storage.features import load_feature_dict

    torch.set_num_threads(args.threads)
    candidates = json.loads(args.candidates)
    with CmdlineParser.global_instance(["FullRun", *shlex.split(args.luigi_args)]):
        needed = [features_task()] + ([ProposalFeatures(source=args.bapg_source)] if args.bapg else [])
        if not luigi.build(needed, local_scheduler=True, log_level="WARNING"):
            raise SystemExit("building the features failed (see the luigi log above)")
        spec = dataset.current()
        ann = dataset_annotations(spec)
        train = ann.subset(spec.train_subset)
        videos = sorted(train.videos["video"])
        bapg = needed[1].output().path if args.bapg else None
        features, grids = load_feature_dict(needed[0].output().path, videos, bapg)
        bapg_channels = needed[1].spec().channels if args.bapg else 0  # B's width, from its spec
    labels = ann.labels
    folds = [[v for i, v in enumerate(videos) if i % args.folds == f] for f in range(args.folds)]
    print(f"{args.detector}{' + BAPG (' + args.bapg_source + ')' if args.bapg else ''}: {len(videos)} training "
          f"videos in {args.folds} folds {[len(f) for f in folds]}, {args.seeds} seeds; held-out average mAP "
          "(tIoU 0.3:0.1:0.7) on training videos only")
    table = []
    for cand in candidates:
        maps, healthy, t0 = [], 0, time.perf_counter()
        for seed in range(args.seeds):
            for val in folds:
                fit = [v for v in videos if v not in set(val)]
                m, health = held_out_map(args.detector, features, train, labels, grids, fit, val, cand, seed,
                                         bapg_channels)
                maps.append(m)
                healthy += bool(health["healthy"])
        row = {"candidate": cand, "mean": float(np.mean(maps)), "std": float(np.std(maps)), "min": float(np.min(maps)),
               "runs": len(maps), "healthy": healthy, "per_run": maps, "seconds": time.perf_counter() - t0}
        table.append(row)
        print(f"  {json.dumps(cand):60s} {100 * row['mean']:5.1f} ± {100 * row['std']:4.1f}  (min "
              f"{100 * row['min']:5.1f}; healthy {healthy}/{len(maps)}; {row['seconds']:.0f} s)", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"detector": args.detector, "bapg": args.bapg,
                                              "folds": args.folds, "seeds": args.seeds, "table": table}, indent=1))


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_detector_recipe", main)  # --no-readme: print only
