"""Detector recipes compared on held-out TRAINING videos (never the test split), over seeds and folds.

    PYTHONPATH=. python benchmarks/bench_detector_recipe.py --detector actionformer \
        --candidates '[{"epochs": 40}, {"epochs": 80}, {"epochs": 120}]' --seeds 3 --folds 2 [--bapg] \
        [--luigi-args "--paths-workdir runs"] [--out benchmarks/out/recipe.json]

The training videos of the configured dataset (the synthetic one by default; any --luigi-args of `luigi --module
pipeline FullRun` select another, e.g. --dataset-features ... --dataset-preset anet) are split into --folds folds
by sorted id; each candidate (training settings, plus "model" / "fusion" options) is laid over the settings a
pipeline run would use (--recipe, small by default, and the dataset preset: its input length, class-agnostic
training and per-detector options; RunSettings), trained on the other folds and evaluated on the held-out fold as
the run's Detect and Evaluate would (the preset's post-processing and tIoU thresholds: thumos14 0.3:0.1:0.7,
anet 0.5:0.05:0.95; anet mode; a class-agnostic run is scored class-agnostically, localisation only), for every
seed. The features (and with --bapg the ProposalFeatures, whose training videos are cross-fitted) come from the
pipeline's own stores, built first when missing. Printed per candidate: mean ± std of the held-out average mAP
over seeds x folds, the worst run, and how many runs passed the training health check. This is how the detector
defaults in stages/detectors/recipes.py are chosen; the test split is not read.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass(frozen=True)
class RunSettings:
    """What a pipeline run of one detector uses, resolved under the run's luigi arguments (run_settings)."""

    train: dict  # training settings over the recipe and preset, with "model" and "fusion" (train_detector's config)
    post: dict  # Detect's post-processing: max_dets, nms_sigma, voting_thresh
    thresholds: tuple  # the preset's tIoU thresholds
    eval_max_dets: int  # detections per video the preset's evaluation takes

    @property
    def class_agnostic(self) -> bool:
        return bool(self.train["class_agnostic"])

    def with_candidate(self, candidate: dict) -> dict:
        """The training config of `candidate` laid over this run's (its "model" / "fusion" over the run's, key by
        key)."""
        out = {**self.train, **{k: v for k, v in candidate.items() if k not in ("model", "fusion")}}
        for part in ("model", "fusion"):
            out[part] = {**self.train.get(part, {}), **candidate.get(part, {})}
        return out


def run_settings(detector: str) -> RunSettings:
    """The RunSettings of `detector` under the luigi configuration in force (call it inside the command line's
    CmdlineParser context): the same resolution as TrainDetector's and Detect's specs."""
    from pipeline.config import dataset_preset, detector_settings
    from pipeline.detector_tasks import Detect
    from tal_pipeline.stages.detectors.training import resolve_train_config

    settings = detector_settings(detector)
    train = resolve_train_config(detector, settings["train"])
    preset = dataset_preset()
    return RunSettings(train={**train, "model": settings["model"], "fusion": settings["fusion"]},
                       post=asdict(Detect(detector=detector).spec()), thresholds=tuple(preset.tiou_thresholds),
                       eval_max_dets=int(preset.eval_max_dets))


def luigi_argv(luigi_args: str, recipe: str) -> list[str]:
    """`FullRun` and the luigi arguments, with `--detectors-recipe recipe` unless they give one (a dataset given by
    --dataset-features would otherwise resolve `auto` to the published recipes)."""
    argv = shlex.split(luigi_args)
    given = any(a == "--detectors-recipe" or a.startswith("--detectors-recipe=") for a in argv)
    return ["FullRun", *argv, *([] if given else ["--detectors-recipe", recipe])]


def held_out_evaluation(name, features, annotations, labels, grids, train_videos, val_videos, candidate, seed,
                        bapg_channels, settings: RunSettings) -> tuple[dict, dict]:
    """Train `candidate` over `settings` on `train_videos`, detect on `val_videos` with the run's post-processing:
    (the evaluation at the run's tIoU thresholds, the checkpoint config)."""
    import pandas as pd

    from tal_pipeline.stages.detectors.detection import detect
    from tal_pipeline.stages.detectors.training import train_detector
    from tal_pipeline.stages.evaluation.mean_ap import evaluate_detections

    fit = {v: features[v] for v in train_videos}
    state, cfg, _ = train_detector(name, fit, annotations.actions, labels, grids, settings.with_candidate(candidate),
                                   seed=seed, progress=False, bapg_channels=bapg_channels)
    val = {v: features[v] for v in val_videos}
    durations = {v: annotations.duration(v) for v in val_videos}
    results = detect(name, state, cfg, val, cfg["labels"], grids, durations, **settings.post)
    rows = [(v, d["segment"][0], d["segment"][1], d["label"], d["score"]) for v, dets in results.items() for d in dets]
    preds = pd.DataFrame(rows, columns=["video", "start", "end", "label", "score"])
    gt = held_out_ground_truth(annotations, val_videos, settings.class_agnostic)
    return evaluate_detections(gt, preds, thresholds=list(settings.thresholds), mode="anet",
                               max_dets=settings.eval_max_dets), cfg


def held_out_ground_truth(annotations, val_videos, class_agnostic: bool):
    """The held-out videos' annotations; class-agnostic: every instance of the one class FOREGROUND, as the
    detector names it (localisation only)."""
    from tal_pipeline.stages.detectors.training import FOREGROUND
    from tal_pipeline.storage.annotations import Annotations

    keep = annotations.videos["video"].isin(val_videos)
    instances = annotations.instances[annotations.instances["video"].isin(val_videos)].reset_index(drop=True)
    if class_agnostic:
        instances = instances.assign(label=FOREGROUND)
    return Annotations(annotations.videos[keep].reset_index(drop=True), instances)


def held_out_map(name, features, annotations, labels, grids, train_videos, val_videos, candidate, seed,
                 bapg_channels, settings: RunSettings) -> tuple[float, dict]:
    ev, cfg = held_out_evaluation(name, features, annotations, labels, grids, train_videos, val_videos, candidate,
                                  seed, bapg_channels, settings)
    return float(ev["average_mAP"]), cfg["health"]


def _thresholds(values) -> str:
    """tIoU thresholds as lo:step:hi when evenly spaced (0.3:0.1:0.7), else listed."""
    v = [float(x) for x in values]
    steps = {round(b - a, 6) for a, b in zip(v, v[1:])}
    return f"{v[0]:g}:{steps.pop():g}:{v[-1]:g}" if len(steps) == 1 else ",".join(f"{x:g}" for x in v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="actionformer", choices=["afsd", "actionformer", "tridet", "tadtr"])
    ap.add_argument("--candidates", default='[{}]', help="JSON list of settings (training keys, \"model\", \"fusion\")")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--bapg", action="store_true", help="train on features + ProposalFeatures (fused)")
    ap.add_argument("--bapg-source", default="tsc", choices=["tsc", "raw", "random", "oracle"])  # BOUNDARY_SOURCES
    ap.add_argument("--recipe", default="small", choices=["small", "published"],
                    help="the detector recipe the candidates are laid over (unless --luigi-args gives "
                         "--detectors-recipe)")
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
    with CmdlineParser.global_instance(luigi_argv(args.luigi_args, args.recipe)):
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
        settings = run_settings(args.detector)
    labels = ann.labels
    folds = [[v for i, v in enumerate(videos) if i % args.folds == f] for f in range(args.folds)]
    print(f"{args.detector}{' + BAPG (' + args.bapg_source + ')' if args.bapg else ''}: {len(videos)} training "
          f"videos in {args.folds} folds {[len(f) for f in folds]}, {args.seeds} seeds; held-out average mAP "
          f"(tIoU {_thresholds(settings.thresholds)}{', class-agnostic' if settings.class_agnostic else ''}) on "
          "training videos only")
    table = []
    for cand in candidates:
        maps, healthy, t0 = [], 0, time.perf_counter()
        for seed in range(args.seeds):
            for val in folds:
                fit = [v for v in videos if v not in set(val)]
                m, health = held_out_map(args.detector, features, train, labels, grids, fit, val, cand, seed,
                                         bapg_channels, settings)
                maps.append(m)
                healthy += bool(health["healthy"])
                print(f"    {json.dumps(cand)}: seed {seed}, held out {val[0]}..: average mAP {100 * m:.1f}"
                      f"{'' if health['healthy'] else ' (unhealthy)'}", flush=True)  # a stopped search keeps these
        row = {"candidate": cand, "mean": float(np.mean(maps)), "std": float(np.std(maps)), "min": float(np.min(maps)),
               "runs": len(maps), "healthy": healthy, "per_run": maps, "seconds": time.perf_counter() - t0}
        table.append(row)
        print(f"  {json.dumps(cand):60s} {100 * row['mean']:5.1f} ± {100 * row['std']:4.1f}  (min "
              f"{100 * row['min']:5.1f}; healthy {healthy}/{len(maps)}; {row['seconds']:.0f} s)", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"detector": args.detector, "bapg": args.bapg,
                                              "folds": args.folds, "seeds": args.seeds, "run": asdict(settings),
                                              "table": table}, indent=1, default=str))


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_detector_recipe", main)  # --no-readme: print only
