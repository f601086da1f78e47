"""`tal-pipeline evaluate --gt GT --pred PRED.json`: temporal detection mAP (docs/method.md §10).

GT in any layout storage.annotations.load_annotations reads, kept as written (no clipping to the video
duration, as the official tools score against the files); predictions in the ActivityNet results layout.
"""
from __future__ import annotations

import json

HELP = "temporal detection mAP of ActivityNet-style results against ground truth"


def _parse_thresholds(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--thresholds must be comma-separated numbers, got {text!r}") from None


def _table(result: dict) -> str:
    """Readable summary: mAP per threshold, per-class AP, and what was left out."""
    thresholds = result["thresholds"]
    width = max([len("mAP"), *(len(label) for label in result["per_class_AP"])])
    head = f"{'tIoU':<{width}} " + " ".join(f"{t:>6.2f}" for t in thresholds) + "    avg"
    lines = [head, "-" * len(head)]
    for label, aps in result["per_class_AP"].items():
        lines.append(f"{label:<{width}} " + " ".join(f"{100 * x:6.2f}" for x in aps)
                     + f" {100 * sum(aps) / len(aps):6.2f}")
    lines.append("-" * len(head))
    lines.append(f"{'mAP':<{width}} " + " ".join(f"{100 * x:6.2f}" for x in result["mAP"])
                 + f" {100 * result['average_mAP']:6.2f}")
    for key, values in result["recall"].items():
        lines.append(f"{'R@' + key + ' #GT':<{width}} " + " ".join(f"{100 * x:6.2f}" for x in values))
    report = result["report"]
    lines.append(
        f"mode {report['mode']}, {report['evaluated_predictions']} detections against {report['gt_instances']} GT "
        "instances; "
        f"max {report['max_dets']} per video ({report['dropped_by_cap']} dropped); "
        f"{report['duplicate_gt_removed']} duplicate GT removed"
    )
    if report["ignored_videos"]:
        lines.append(f"ignored {len(report['ignored_videos'])} video(s) absent from the GT: "
                     f"{', '.join(report['ignored_videos'][:5])}")
    if report["ignored_labels"]:
        lines.append(f"ignored label(s) absent from the GT: {', '.join(report['ignored_labels'])}")
    if report.get("invalid_dropped"):
        lines.append(f"dropped {report['invalid_dropped']} segment(s) that end before they start (--drop-invalid)")
    return "\n".join(lines)


def handle(args) -> int:
    from tal_pipeline.stages.evaluation.mean_ap import (  # heavy imports inside the handler
        evaluate_detections,
        load_predictions,
    )
    from tal_pipeline.storage.annotations import load_annotations

    thresholds = _parse_thresholds(args.thresholds) if args.thresholds else args.preset
    max_dets = None if args.max_dets == 0 else args.max_dets
    gt = load_annotations(args.gt, beyond_duration="keep")
    invalid = "drop" if args.drop_invalid else "error"
    predictions = load_predictions(args.pred, invalid=invalid)
    result = evaluate_detections(gt, predictions, thresholds=thresholds, mode=args.mode, max_dets=max_dets,
                                 subset=args.subset, invalid=invalid)
    if args.json:
        print(json.dumps(result))
    else:
        print(_table(result))
    return 0


def add_arguments(p) -> None:
    p.add_argument("--gt", required=True,
                   help="ground truth: ActivityNet-style JSON, ActionFormer JSON or G-TAD CSV(s)")
    p.add_argument("--pred", required=True, help='predictions: {"results": {video: [{"segment", "label", "score"}]}}')
    p.add_argument("--preset", choices=["thumos14", "activitynet"], default="thumos14",
                   help="tIoU thresholds: thumos14 0.3:0.1:0.7 (default), activitynet 0.5:0.05:0.95")
    p.add_argument("--thresholds", default=None, help="comma-separated tIoU thresholds (overrides --preset)")
    p.add_argument("--mode", choices=["anet", "thumos14"], default="anet",
                   help="anet: interpolated AP, tIoU >= t (default); thumos14: official protocol, "
                        "non-interpolated AP, tIoU > t, Ambiguous overlaps ignored")
    p.add_argument("--subset", default=None, help="evaluate one GT subset only, e.g. test (case-insensitive)")
    p.add_argument("--max-dets", type=int, default=200, help="keep at most this many detections per video (0: no cap)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--drop-invalid", action="store_true",
                   help="drop segments that end before they start (counted in the report) instead of refusing the file")
