"""BAPG fusion settings probed on held-out TRAINING videos (never the test split): does +BAPG with useless evidence
(the `random` source) keep the baseline's mAP, and what does the encoder's evidence add? Issue 29.

    PYTHONPATH=. python benchmarks/bench_bapg_probe.py --detector actionformer --sources random tsc \
        --fusions '[{}, {"gate": true, "gate_penalty": 0.005, "lr_scale": 1.0}]' --seeds 3 --folds 2 \
        [--train '{"epochs": 40}'] [--luigi-args "--dataset-features ... --paths-workdir runs/thumos_like"] \
        [--recipe small] [--out benchmarks/out/bapg_probe.json]

The training videos of the configured dataset (--luigi-args as for `luigi --module pipeline FullRun`; the synthetic
one by default) are split into --folds folds by sorted id, the cross-fitting folds of the encoders (docs/method.md
§7): a held-out fold's BAPG channels come from the encoder trained on the other folds, as a test video's come
from an encoder trained on the detector's training videos. For every seed and fold the detector is trained on the
other folds without BAPG (the baseline, once) and with BAPG of each source under each fusion setting (--train:
training settings over the run's, for every run), then evaluated on the held-out fold as the run would be
(bench_detector_recipe.RunSettings: the recipe, the preset's inputs, post-processing and tIoU thresholds).
Printed per source and fusion setting: the paired difference (+BAPG - baseline, same seed and fold) of the
average mAP and of mAP at the highest threshold (tIoU 0.7 on thumos14, 0.95 on anet), mean ± std over seeds x
folds, how many pairs gained, and the
fusion's norm (for the gate: of the open gate; 0 = the baseline). The issue's "no harm" criterion on useless
evidence: |mean| <= std for the random source. Both sides' channels come from fold encoders here, so a scale
difference between the fold encoders and the full encoder (what rank_normalise removes) is not probed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_detector_recipe import (  # noqa: E402  one held-out run, shared with the recipe search
    held_out_evaluation,
    luigi_argv,
    run_settings,
)


def held_out(name, features, annotations, labels, grids, fit, val, config, seed, bapg_channels, settings) -> dict:
    """Train on `fit`, detect on `val`: {"avg", "at_high" (mAP at the highest tIoU), "fusion_norm" (None without
    BAPG), "healthy"}."""
    ev, cfg = held_out_evaluation(name, features, annotations, labels, grids, fit, val, config, seed, bapg_channels,
                                  settings)
    return {"avg": float(ev["average_mAP"]), "at_high": float(ev["mAP"][-1]), "fusion_norm": cfg.get("fusion_norm"),
            "healthy": bool(cfg["health"]["healthy"])}


def each_pair(name, features, annotations, labels, grids, videos, pairs, config, bapg_channels, settings,
              what) -> list[dict]:
    """held_out for every (seed, held-out fold), each printed as it ends (a stopped probe keeps what it printed)."""
    runs, high = [], f"{settings.thresholds[-1]:g}"
    for seed, val in pairs:
        fit = [v for v in videos if v not in set(val)]
        runs.append(held_out(name, features, annotations, labels, grids, fit, val, config, seed, bapg_channels,
                             settings))
        print(f"    {what}: seed {seed}, held out {val[0]}..: average mAP {100 * runs[-1]['avg']:.1f}, at {high} "
              f"{100 * runs[-1]['at_high']:.1f}", flush=True)
    return runs


def paired(runs: list[dict], base: list[dict]) -> dict:
    """Paired differences (+BAPG - baseline) over the same seeds x folds, in mAP points."""
    out = {}
    for key in ("avg", "at_high"):
        d = 100 * (np.array([r[key] for r in runs]) - np.array([b[key] for b in base]))
        out[key] = {"mean": float(d.mean()), "std": float(d.std()), "gained": int((d > 0).sum()),
                    "per_pair": d.tolist()}
    norms = [r["fusion_norm"] for r in runs if r["fusion_norm"] is not None]
    out["fusion_norm"] = float(np.mean(norms)) if norms else None
    out["healthy"] = sum(r["healthy"] for r in runs)
    return out


def load(args):
    """The training videos' annotations, the class list, the videos, their features and time grids, and per source
    (features + its ProposalFeatures, B's width); the stores are built when missing."""
    import luigi
    from luigi.cmdline_parser import CmdlineParser

    import pipeline  # noqa: F401  (registers the tasks)
    from pipeline import dataset
    from pipeline.bapg_tasks import ProposalFeatures
    from pipeline.data_tasks import dataset_annotations, features_task
    from tal_pipeline.storage.features import load_feature_dict

    with CmdlineParser.global_instance(luigi_argv(args.luigi_args, args.recipe)):
        tasks = [features_task()] + [ProposalFeatures(source=s) for s in args.sources]
        if not luigi.build(tasks, local_scheduler=True, log_level="WARNING"):
            raise SystemExit("building the features failed (see the luigi log above)")
        spec = dataset.current()
        train = dataset_annotations(spec).subset(spec.train_subset)
        videos = sorted(train.videos["video"])
        labels = dataset_annotations(spec).labels
        plain, grids = load_feature_dict(tasks[0].output().path, videos)
        fused = {s: (load_feature_dict(tasks[0].output().path, videos, t.output().path)[0], t.spec().channels)
                 for s, t in zip(args.sources, tasks[1:])}  # B's width from its spec
        settings = run_settings(args.detector)
    return train, labels, videos, plain, grids, fused, settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="actionformer", choices=["afsd", "actionformer", "tridet", "tadtr"])
    ap.add_argument("--sources", nargs="+", default=["random", "tsc"], choices=["tsc", "raw", "random", "oracle"])
    ap.add_argument("--fusions", default='[{}, {"gate": true, "gate_penalty": 0.005, "lr_scale": 1.0}]',
                    help="JSON list of fusion settings (models.fusion.BAPGFusion options)")
    ap.add_argument("--train", default="{}", help="JSON training settings for every run (and \"model\")")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--luigi-args", default="", help="arguments of `luigi --module pipeline FullRun`")
    ap.add_argument("--recipe", default="small", choices=["small", "published"],
                    help="the detector recipe of every run (unless --luigi-args gives --detectors-recipe)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="", help="write the table as JSON here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    fusions, train_cfg = json.loads(args.fusions), json.loads(args.train)
    ann, labels, videos, plain, grids, fused, settings = load(args)
    high = f"{settings.thresholds[-1]:g}"
    folds = [[v for i, v in enumerate(videos) if i % args.folds == f] for f in range(args.folds)]
    pairs = [(seed, val) for seed in range(args.seeds) for val in folds]
    print(f"{args.detector}: {len(videos)} training videos in {args.folds} folds {[len(f) for f in folds]}, "
          f"{args.seeds} seeds; paired held-out differences (+BAPG - baseline) in mAP points, training videos only")
    t0 = time.perf_counter()
    base = each_pair(args.detector, plain, ann, labels, grids, videos, pairs, train_cfg, 0, settings, "baseline")
    print(f"  baseline: average mAP {100 * np.mean([b['avg'] for b in base]):.1f}, at {high} "
          f"{100 * np.mean([b['at_high'] for b in base]):.1f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    table = []
    for source, (features, channels) in fused.items():
        for fusion in fusions:
            t0 = time.perf_counter()
            runs = each_pair(args.detector, features, ann, labels, grids, videos, pairs,
                             {**train_cfg, "fusion": fusion}, channels, settings, f"{source} {json.dumps(fusion)}")
            row = {"source": source, "fusion": fusion, **paired(runs, base), "seconds": time.perf_counter() - t0}
            table.append(row)
            a, h = row["avg"], row["at_high"]
            norm = "-" if row["fusion_norm"] is None else f"{row['fusion_norm']:.3g}"
            print(f"  {source:7s} {json.dumps(fusion):55s} avg {a['mean']:+5.1f} ± {a['std']:4.1f} "
                  f"({a['gained']}/{len(runs)})  @{high} {h['mean']:+5.1f} ± {h['std']:4.1f} "
                  f"({h['gained']}/{len(runs)})"
                  f"  norm {norm}  healthy {row['healthy']}/{len(runs)}  {row['seconds']:.0f} s", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"detector": args.detector, "folds": args.folds, "seeds": args.seeds,
                                              "train": train_cfg, "thresholds": list(settings.thresholds),
                                              "baseline": base, "table": table}, indent=1))


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_bapg_probe", main)  # --no-readme: print only
