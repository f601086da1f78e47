"""Does the contrastive encoder put TSC's change points on the action boundaries? Measured on held-out TRAINING
videos of the THUMOS14-shaped feature benchmark (the 40 test videos are never read).

    PYTHONPATH=. python benchmarks/bench_encoder_boundaries.py [--data runs/data/thumos_like] [--seeds 2]
        [--epochs 8] [--rows '[["name", {encoder config}], ...]'] [--out benchmarks/out/encoder_boundaries.json]

1. Writes the benchmark (`tal-pipeline synth --features DIR`) unless DIR already holds it; reads the features and
   annotations of its 60 training ("validation") videos only.
2. Splits them into 2 folds by sorted id (as bench_detector_recipe.py and the pipeline's cross-fitting do). For
   every row (an encoder config over DEFAULT_ENCODER; "raw" = the features themselves, no encoder) and seed, it
   trains the encoder on one fold, embeds the other with `make_embedder` (what SimilarityMatrices and single-video
   inference use), builds each held-out video's similarity matrix (`similarity_matrix`) and runs TSC at the
   pipeline's default rates (`tsc_scales`, 8 / 16 / 32 change points per minute); then the other way round.
3. Scores the change points against the ground-truth boundaries (`boundary_accuracy_table`: one-to-one matching
   within +-1 and +-2 feature steps, 7.5 steps per second), micro-averaged over all 60 held-out videos (each is
   held out once per seed); prints F1 per scale (mean over seeds; +-: half the range between seeds), the held-out
   pool gap s(a,p) - s(a,hard negative) (`pool_similarity`), the share of triplets whose hinge was active in the
   first and the last epoch, and the training time.
4. Says where the change points of the middle scale (16/min) lie, from the generator's own layout (warm-up and
   cool-down spans, scene cuts; extra keys of the benchmark's annotations.json): the share within +-2 steps of an
   action boundary, else of a warm-up's start or a cool-down's end (the appearance change that TSC on the raw
   features finds), else of a scene cut, else elsewhere.
Each encoder trains `--epochs` epochs (the stage default is 30; the short budget keeps the whole table at ~15 min
on 2 cores; `--check-epochs` adds today's encoder at the full 30 epochs for comparison).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RATES = (8, 16, 32)  # the TSCProposals default (stages.presets: thumos14), change points per minute
TOLERANCES = (1, 2)
DEFAULT_ROWS = [  # name, encoder config over DEFAULT_ENCODER (None: the raw features, no encoder)
    ["raw features", None],
    ["today's encoder", {}],
    ["context 5", {"context": 5}],
    ["tau 0.25 s", {"hard_negative_tau": 0.25}],
    ["eq.3 gamma 0", {"loss": "bapg", "gamma": 0.0}],
    ["triplet margin 1.0", {"margin": 1.0}],
    ["context 5 + margin 1.0", {"context": 5, "margin": 1.0}],
    ["context 5 + eq.3 gamma 0", {"context": 5, "loss": "bapg", "gamma": 0.0}],
    ["context 5 + margin 1 + tau", {"context": 5, "margin": 1.0, "hard_negative_tau": 0.25}],
]


def load(data: Path):
    """Features {video: (T, C) float32}, the actions table, the time grid and the generator's layout
    {video: {"flank_edges": seconds, "scene_cuts": seconds}} of the training videos only."""
    from tal_pipeline.stages.data.import_features import read_source
    from tal_pipeline.stages.data.timegrid import TimeGrid
    from tal_pipeline.storage.annotations import load_annotations

    raw = json.loads((data / "annotations.json").read_text())
    meta = raw["time_grid"]
    grid = TimeGrid(float(meta["fps"]), int(meta["window"]), int(meta["stride"]))
    train = load_annotations(data / "annotations.json").subset("validation")
    videos = sorted(train.videos["video"])
    features = {v: read_source(data / "features", v).astype(np.float32) for v in videos}
    layout = {v: {"flank_edges": [t for w, c in raw["database"][v].get("hard_negatives", []) for t in (w[0], c[1])],
                  "scene_cuts": list(raw["database"][v].get("scene_cuts", []))} for v in videos}
    return features, train.actions, grid, layout


WHERE = ("boundary", "flank edge", "scene cut", "elsewhere")


def where_share(cps, actions, features, grid, layout, scale: str = "16/min", k: int = 2) -> dict[str, float]:
    """Share of the scale's change points within +-k steps of an action boundary, else of a warm-up start /
    cool-down end, else of a scene cut, else none (times placed on the grid as the ground truth is)."""
    from tal_pipeline.stages.bapg.boundary_accuracy import gt_boundary_steps

    counts = dict.fromkeys(WHERE, 0)
    for v, by_scale in cps.items():
        T = len(features[v])
        marks = [gt_boundary_steps(actions.loc[actions["video"] == v, ["start", "end"]].to_numpy(), T, grid.fps,
                                   grid.window, grid.stride)]
        for key in ("flank_edges", "scene_cuts"):
            t = np.asarray(layout[v][key], np.float64)
            marks.append(gt_boundary_steps(np.stack([t, t], 1), T, grid.fps, grid.window, grid.stride))
        for c in by_scale[scale]:
            near = [m.size and np.abs(m - c).min() <= k for m in marks]
            counts[WHERE[near.index(True)] if any(near) else "elsewhere"] += 1
    total = max(sum(counts.values()), 1)
    return {w: n / total for w, n in counts.items()}


def change_points(embeddings: np.ndarray, grid, name: str) -> dict[str, np.ndarray]:
    """{scale name: change points} of one video from its embeddings, with the stages' own functions."""
    from tal_pipeline.stages.bapg.scales import Scales, tsc_scales
    from tal_pipeline.stages.bapg.similarity import similarity_matrix

    S = similarity_matrix(embeddings)  # (T, T) float16, as the SimilarityMatrices stage stores it
    return dict(tsc_scales(S, grid.span_seconds(S.shape[0]), Scales(rates=RATES), name=name))


def run_row(config, features, actions, grid, folds, seed: int, epochs: int) -> dict:
    """One row and seed over both folds: change points of every held-out video, pool gap, hinge activity."""
    from tal_pipeline.stages.bapg.encoder import make_embedder, train_encoder
    from tal_pipeline.stages.bapg.sample_pools import build_sample_pools, pool_similarity

    cps, gaps, active, seconds = {}, [], [], 0.0
    for k, held in enumerate(folds):
        fit = [v for f in folds[:k] + folds[k + 1:] for v in f]
        if config is None:
            embed = features.__getitem__
        else:
            t0 = time.perf_counter()
            state, cfg, log = train_encoder({v: features[v] for v in fit}, actions, grid, {"epochs": epochs, **config},
                                            seed=seed, device="cpu", progress=False)
            seconds += time.perf_counter() - t0
            f = make_embedder(state, cfg, "cpu")
            embed = lambda v, f=f: f(features[v])  # noqa: E731
            last = max(r["epoch"] for r in log)
            active.append([float(np.mean([r["hinge_active"] for r in log if r["epoch"] == e])) for e in (0, last)])
        pools = build_sample_pools(actions, grid, {v: len(features[v]) for v in held},
                                   (config or {}).get("hard_negative_seconds", 2.0))
        emb = {v: embed(v) for v in held}
        gaps.append(pool_similarity(emb, pools, seed=seed)["gap"])
        cps.update({v: change_points(emb[v], grid, v) for v in held})
    return {"change_points": cps, "gap": float(np.mean(gaps)), "seconds": seconds,
            "hinge_active": np.mean(active, axis=0).tolist() if active else None}


def f1_table(cps, actions, features, grid) -> dict:
    """{(scale, tolerance): F1 micro-averaged over the videos of cps}, and (precision, recall) alongside."""
    from tal_pipeline.stages.bapg.boundary_accuracy import boundary_accuracy_table, gt_boundary_steps

    gt = {v: gt_boundary_steps(actions.loc[actions["video"] == v, ["start", "end"]].to_numpy(), len(features[v]),
                               grid.fps, grid.window, grid.stride) for v in cps}
    table = boundary_accuracy_table(cps, gt, TOLERANCES)
    return {(r.scale, int(r.tolerance)): (float(r.f1), float(r.precision), float(r.recall))
            for r in table.itertuples() if r.video == "all"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="runs/data/thumos_like")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=8, help="encoder epochs per training (stage default 30)")
    ap.add_argument("--rows", default="", help="JSON list of [name, encoder config or null for raw features]")
    ap.add_argument("--check-epochs", action="store_true", help="also today's encoder at the default 30 epochs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on 2 shared cores)")
    ap.add_argument("--out", default="", help="write the table as JSON here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    data = (REPO / args.data) if not Path(args.data).is_absolute() else Path(args.data)
    if not (data / "annotations.json").is_file():
        subprocess.run([sys.executable, "-m", "pipeline.cli", "synth", "--features", str(data)], check=True, cwd=REPO)
    features, actions, grid, layout = load(data)
    videos = sorted(features)
    folds = [videos[0::2], videos[1::2]]
    rows = json.loads(args.rows) if args.rows else list(DEFAULT_ROWS)
    if args.check_epochs:
        rows.append(["today's encoder, 30 epochs", {"epochs": 30}])
    scales = [f"{r:g}/min" for r in RATES]
    n_gt = sum(len(actions[actions["video"] == v]) for v in videos)
    print(f"{len(videos)} training videos ({n_gt} actions) in 2 folds {[len(f) for f in folds]}; encoder {args.epochs} "
          f"epochs unless given; {args.seeds} seed(s); TSC at {', '.join(scales)}; boundary F1 micro-averaged over "
          "the held-out videos (mean over seeds, +- half the range)\n")
    head = "  ".join(f"F1±{k} {s:>6}" for k in TOLERANCES for s in scales)
    print(f"{'row':28s} {head}   gap   hinge 1st/last  train s")
    results = []
    for name, config in rows:
        seeds = [0] if config is None else list(range(args.seeds))
        runs = [run_row(config, features, actions, grid, folds, s, args.epochs) for s in seeds]
        f1s = [f1_table(r["change_points"], actions, features, grid) for r in runs]
        cells, row = [], {"name": name, "config": config, "seeds": seeds, "f1": {}, "precision": {}, "recall": {}}
        for k in TOLERANCES:
            for s in scales:
                vals = np.array([t[(s, k)] for t in f1s])  # (seeds, 3): f1, precision, recall
                row["f1"][f"{s} ±{k}"] = vals[:, 0].tolist()
                row["precision"][f"{s} ±{k}"] = vals[:, 1].tolist()
                row["recall"][f"{s} ±{k}"] = vals[:, 2].tolist()
                half = (vals[:, 0].max() - vals[:, 0].min()) / 2
                cells.append(f"{vals[:, 0].mean():.3f}" + (f"±{half:.3f}" if len(seeds) > 1 else "      "))
        row["gap"] = [r["gap"] for r in runs]
        row["hinge_active"] = [r["hinge_active"] for r in runs]
        row["train_seconds"] = float(np.mean([r["seconds"] for r in runs]))
        hinge = ("/".join(f"{np.mean([h[i] for h in row['hinge_active']]):.2f}" for i in (0, 1))
                 if config is not None else "   -     ")
        print(f"{name:28s} " + "  ".join(f"{c:>13s}" for c in cells) +
              f"  {np.mean(row['gap']):5.2f}  {hinge:>12s}  {row['train_seconds']:6.0f}", flush=True)
        shares = [where_share(r["change_points"], actions, features, grid, layout) for r in runs]
        row["where_16_per_min"] = {w: float(np.mean([x[w] for x in shares])) for w in WHERE}
        results.append(row)
    if any(layout[v]["flank_edges"] for v in videos):
        print("\nwhere the 16/min change points lie (share within ±2 steps of, in this order):")
        print(f"{'row':28s} " + "  ".join(f"{w:>10s}" for w in WHERE))
        for row in results:
            print(f"{row['name']:28s} " + "  ".join(f"{row['where_16_per_min'][w]:10.2f}" for w in WHERE))
    trained = [r for r in results if r["config"] is not None]
    if trained:
        best = max(trained, key=lambda r: np.mean([np.mean(r["f1"][f"{s} ±2"]) for s in scales]))
        print(f"\nbest by F1±2 (mean over the scales and seeds): {best['name']} {json.dumps(best['config'])}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"epochs": args.epochs, "seeds": args.seeds, "rates": RATES,
                                              "rows": results}, indent=1))


if __name__ == "__main__":
    from _readme import run_recorded  # benchmarks/_readme.py: writes this script's section of benchmarks/README.md

    run_recorded("bench_encoder_boundaries", main)  # --no-readme: print only
