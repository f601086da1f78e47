"""End of the chain: Evaluate each detector variant, the Report over variants and seeds, and FullRun."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import luigi

from pipeline import config
from pipeline.bapg_tasks import SimilarityMatrices, TrainEncoder, TSCProposals
from pipeline.base import StageTask
from pipeline.data_tasks import dataset_annotations, features_task
from pipeline.detector_tasks import Detect, DetectorTask

log = logging.getLogger("pipeline")

THUMOS14_TIOUS = [0.3, 0.4, 0.5, 0.6, 0.7]


class Evaluate(DetectorTask):
    """mAP of one detector variant's detections on the test subset (evaluation.json)."""

    artifact = "evaluation"
    suffix = ""
    tiou_thresholds = luigi.ListParameter(default=THUMOS14_TIOUS, description="tIoU thresholds (THUMOS14 preset)")
    mode = luigi.ChoiceParameter(default="anet", choices=["anet", "thumos14"],
                                 description="anet: interpolated AP, tIoU >= t; thumos14: the official protocol")
    max_dets = luigi.IntParameter(default=200, description="detections kept per video")

    def requires(self):
        return Detect(**self.variant(), max_dets=self.max_dets)

    def run(self):
        from tal_pipeline.stages.evaluation.mean_ap import evaluate_detections, load_predictions

        ann = dataset_annotations(self.data).subset(self.data.test_subset)
        predictions = load_predictions(Path(self.input().path) / "detections.json")
        result = evaluate_detections(ann, predictions, thresholds=list(self.tiou_thresholds), mode=self.mode,
                                     max_dets=self.max_dets)
        result["variant"] = self.variant_record()
        # The training run's health check travels with its result: the report flags, never drops, a sick run.
        result["health"] = json.loads((Path(self.input().path) / "detections.json").read_text()
                                      )["external_data"].get("health")
        with self.output().writer() as folder:
            (folder / "evaluation.json").write_text(json.dumps(result, indent=1))
        log.info("evaluation: %s%s%s seed %d: average mAP %.4f", self.detector,
                 f" + BAPG ({self.bapg_source})" if self.use_bapg else "",
                 " (untrained)" if self.untrained else "", self.seed, result["average_mAP"])


class Report(StageTask):
    """report.md, report.json and plots: each detector with and without BAPG over seeds, proposal recall,
    the encoder's positive vs hard-negative similarity. Written to report-<hash>/ and copied to <workdir>/report/."""

    artifact = "report"
    suffix = ""
    detectors = luigi.ListParameter(default=["afsd", "actionformer"])
    seeds = luigi.IntParameter(default=3, description="seeds 0..N-1 per detector variant (mean +- std)")
    examples = luigi.IntParameter(default=3, description="test videos drawn in the plots")
    ablations = luigi.ListParameter(default=[], description="+BAPG rows with other boundaries: raw (no encoder), "
                                                            "random (same counts), oracle (ground truth)")
    ablation_seeds = luigi.IntParameter(default=0, description="seeds of the ablation rows (0: as many as --seeds)")

    def variants(self) -> list[tuple[str, bool, str, int]]:
        main = [(d, b, "tsc", s) for d in self.detectors for b in (False, True) for s in range(self.seeds)]
        extra = [(d, True, a, s) for d in self.detectors for a in self.ablations
                 for s in range(self.ablation_seeds or self.seeds)]
        return main + extra

    def requires(self):
        evals = {f"{d}|{int(b)}|{src}|{s}": Evaluate(detector=d, use_bapg=b, bapg_source=src, seed=s)
                 for d, b, src, s in self.variants()}
        # Sanity rows: each detector with its initial weights (seed 0), which training must beat by far.
        evals.update({f"{d}|0|0|untrained": Evaluate(detector=d, seed=0, untrained=True) for d in self.detectors})
        detections = {f"{d}|{int(b)}|0": Detect(detector=d, use_bapg=b, seed=0) for d in self.detectors
                      for b in (False, True)}
        return {"evaluations": evals, "detections": detections, "encoder": TrainEncoder(),
                "similarity": SimilarityMatrices(), "proposals": TSCProposals(), "features": features_task()}

    def run(self):
        from tal_pipeline.stages.evaluation.report import ExampleInputs, write_report

        inputs = self.input()
        evaluations = [json.loads((Path(t.path) / "evaluation.json").read_text())
                       for t in inputs["evaluations"].values()]
        detections = {key: json.loads((Path(t.path) / "detections.json").read_text())["results"]
                      for key, t in inputs["detections"].items()}
        recall_file = Path(inputs["proposals"].path) / "recall.json"
        recall = json.loads(recall_file.read_text()) if recall_file.is_file() else []
        recall = [{k: v for k, v in r.items() if k != "subset"} for r in recall
                  if r.get("subset", self.data.test_subset) == self.data.test_subset]  # the report's table: test
        encoder = json.loads((Path(inputs["encoder"].path) / "separation.json").read_text())
        test = dataset_annotations(self.data).subset(self.data.test_subset)
        examples = ExampleInputs(test, similarity_store=inputs["similarity"].path,
                                 proposals_store=inputs["proposals"].path, detections=detections,
                                 count=self.examples)
        artifacts = {name: Path(t.path).name for name, t in inputs.items() if not isinstance(t, dict)}
        with self.output().writer() as folder:
            write_report(folder, evaluations, recall, encoder, examples, artifacts=artifacts)
        latest = Path(config.paths().workdir) / "report"
        shutil.rmtree(latest, ignore_errors=True)
        shutil.copytree(self.output().path, latest)
        log.info("report: %s (copied to %s)", Path(self.output().path) / "report.md", latest / "report.md")


class FullRun(luigi.WrapperTask):
    """The whole chain on the configured dataset (the synthetic one when none is configured)."""

    def requires(self):
        return Report()
