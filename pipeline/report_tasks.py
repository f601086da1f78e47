"""End of the chain: Evaluate each detector variant, the Report over variants and seeds, and FullRun."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import luigi

from pipeline import config
from pipeline.bapg_tasks import (
    BOUNDARY_ACCURACY_JSON,
    GroupListsParameter,
    TrainEncoder,
    TSCProposals,
)
from pipeline.base import StageTask
from pipeline.classification_tasks import FuseVideoClasses
from pipeline.data_tasks import dataset_annotations, features_task
from pipeline.detector_tasks import Detect, DetectorTask, variant_params
from pipeline.specs import EvaluateSpec, ReportSpec
from tal_pipeline.stages.bapg.proposals import BOUNDARY_SOURCES
from tal_pipeline.stages.evaluation.variant import Variant

log = logging.getLogger("pipeline")


class Evaluate(DetectorTask):
    """mAP of one detector variant's detections on the test subset (evaluation.json); a class-agnostic detector's
    detections are evaluated with their video-level classes (FuseVideoClasses)."""

    artifact = "evaluation"
    suffix = ""
    tiou_thresholds = luigi.OptionalListParameter(default=None, description="tIoU thresholds (empty: the dataset "
                                                  "preset's, thumos14 0.3:0.1:0.7, anet 0.5:0.05:0.95)")
    mode = luigi.ChoiceParameter(default="anet", choices=["anet", "thumos14"],
                                 description="anet: interpolated AP, tIoU >= t; thumos14: the official protocol")
    max_dets = luigi.OptionalIntParameter(default=None, description="detections kept per video, passed on to Detect "
                                                                    "(empty: the preset's, 200)")

    def spec(self) -> EvaluateSpec:
        """The tIoU thresholds and detections per video as given, or the dataset preset's."""
        preset = config.dataset_preset()
        return EvaluateSpec(tiou_thresholds=tuple(float(t) for t in (
            preset.tiou_thresholds if self.tiou_thresholds is None else self.tiou_thresholds)), mode=self.mode,
            max_dets=int(preset.eval_max_dets if self.max_dets is None else self.max_dets))

    def class_agnostic(self) -> bool:
        """Whether the detector trains class-agnostic (its resolved training settings; the anet preset): its
        detections then take their classes from ClassifyVideos (FuseVideoClasses)."""
        return bool(self.trained().spec().train["class_agnostic"])

    def requires(self):
        if self.class_agnostic():
            return FuseVideoClasses(**self.variant(), max_dets=self.max_dets)
        return Detect(**self.variant(), max_dets=self.max_dets)

    def run(self):
        from tal_pipeline.stages.evaluation.mean_ap import evaluate_detections, load_predictions

        ann = dataset_annotations(self.data).subset(self.data.test_subset)
        file = Path(self.input().path) / "detections.json"
        predictions = load_predictions(file)
        spec = self.spec()
        result = evaluate_detections(ann, predictions, thresholds=list(spec.tiou_thresholds), mode=spec.mode,
                                     max_dets=spec.max_dets)
        result["variant"] = self.run_variant().record()
        video_classes = json.loads(file.read_text()).get("video_classes")
        if video_classes is not None:
            result["video_classes"] = video_classes
        with self.writer() as folder:
            (folder / "evaluation.json").write_text(json.dumps(result, indent=1))
        self.write_board(result)
        groups = "" if self.run_variant().default_groups else f" [{', '.join(self.bapg_groups)}]"
        log.info("evaluation: %s%s%s seed %d: average mAP %.4f", self.detector,
                 f" + BAPG ({self.bapg_source}){groups}" if self.bapg else "",
                 " (untrained)" if self.untrained else "", self.seed, result["average_mAP"])

    def write_board(self, result: dict) -> None:
        """mAP per tIoU into the TensorBoard run of the detector these detections came from (its folder)."""
        from tal_pipeline.storage.training_board import write_evaluation

        run = Path(self.trained().output().path)
        step = json.loads((run / "config.json").read_text()).get("iterations", 0)
        write_evaluation(run, Path(self.output().path).name, dict(zip(result["thresholds"], result["mAP"])),
                         result["average_mAP"], step)


class Report(StageTask):
    """report.md, report.json and plots: each detector with and without BAPG over seeds, proposal recall,
    the boundary accuracy of each boundary source (its TSCProposals store, no detector needed), the encoder's
    positive vs hard-negative similarity. Written to report-<hash>/ and copied to <workdir>/report/."""

    artifact = "report"
    suffix = ""
    detectors = luigi.ListParameter(default=["afsd", "actionformer"])
    seeds = luigi.IntParameter(default=3, description="seeds 0..N-1 per detector variant (mean +- std)")
    examples = luigi.IntParameter(default=3, description="test videos drawn in the plots")
    ablations = luigi.ListParameter(default=[], description="+BAPG rows with other boundaries: raw (no encoder), "
                                                            "random (same counts), oracle (ground truth)")
    ablation_seeds = luigi.IntParameter(default=0, description="seeds of the ablation rows (0: as many as --seeds)")
    group_ablations = GroupListsParameter(default=[], description="+BAPG (tsc) rows with other channel groups of B, "
                                          'e.g. [["pooled"], ["pooled", "boundary", "novelty", "strength"]]')
    ablation_groups = GroupListsParameter(default=[], description="the --Report-ablations rows (other boundary "
                                          "sources) also with these channel groups of B, e.g. "
                                          '[["pooled", "boundary", "novelty", "strength"]]')
    boundary_sources = luigi.ListParameter(default=list(BOUNDARY_SOURCES),
                                           description="boundary sources in the boundary accuracy table (each needs "
                                                       "only its TSCProposals): tsc, raw, random, oracle")

    def variants(self) -> list[Variant]:
        """Every evaluated run: each detector with and without BAPG, the ablation rows (other boundary sources,
        other channel groups, other sources with other groups; their seeds: ablation_seeds), and (seed 0) the
        untrained sanity rows, which training must beat by far. A group ablation equal to the default groups is the
        + BAPG row itself."""
        seeds = range(self.ablation_seeds or self.seeds)
        main = [Variant.of(d, b, "tsc", s) for d in self.detectors for b in (False, True) for s in range(self.seeds)]
        extra = [Variant.of(d, True, a, s) for d in self.detectors for a in self.ablations for s in seeds]
        extra += [Variant.of(d, True, "tsc", s, bapg_groups=g) for d in self.detectors for g in self.group_ablations
                  for s in seeds]
        extra += [Variant.of(d, True, a, s, bapg_groups=g) for d in self.detectors for a in self.ablations
                  for g in self.ablation_groups for s in seeds]
        untrained = [Variant.of(d, untrained=True) for d in self.detectors]
        return list(dict.fromkeys(main + extra + untrained))

    def spec(self) -> ReportSpec:
        return ReportSpec(examples=int(self.examples))

    def requires(self):
        evals = {v: Evaluate(**variant_params(v)) for v in self.variants()}
        examples = {v: e.requires() for v, e in evals.items()  # Detect, or FuseVideoClasses (class-agnostic)
                    if v.seed == 0 and not v.untrained and v.bapg_source in (None, "tsc") and v.default_groups}
        if not any(v.bapg for v in examples):  # a +BAPG (TSC) run: the method's chain
            raise ValueError("Report: no run to report on: it needs a detector (--Report-detectors) and a seed "
                             "(--Report-seeds >= 1)")
        # The method's chain, as every +BAPG (TSC) detector reads it (DetectorTask.feature_inputs, TrainDetector)
        proposals = TSCProposals(source="tsc")
        return {"evaluations": evals, "trainings": {v: e.trained() for v, e in evals.items()},
                "detections": examples, "features": features_task(), "proposals": proposals,
                "similarity": proposals.similarity_task(), "encoder": TrainEncoder(),
                "boundaries": self.boundary_stores(proposals)}

    def boundary_stores(self, tsc: TSCProposals) -> dict[str, TSCProposals]:
        """{source: TSCProposals} of the boundary accuracy table: the method's own store for tsc, for the others the
        store a +BAPG ablation with that source reads (ProposalFeatures(source=...) requires the same task)."""
        unknown = [s for s in self.boundary_sources if s not in BOUNDARY_SOURCES]
        if unknown:
            raise ValueError(f"Report: unknown boundary source(s) {unknown} in --Report-boundary-sources; known: "
                             f"{list(BOUNDARY_SOURCES)}")
        return {s: tsc if s == "tsc" else TSCProposals(source=s) for s in BOUNDARY_SOURCES
                if s in self.boundary_sources}

    def boundary_accuracy(self, stores: dict) -> dict:
        """report.json's "boundary_accuracy" from each source's boundary_accuracy.json (TSCProposals writes it)."""
        from tal_pipeline.stages.evaluation.report_boundaries import boundary_accuracy_section

        subsets = {"test": self.data.test_subset, "train": self.data.train_subset}
        tables = {}
        for source, target in stores.items():
            file = Path(target.path) / BOUNDARY_ACCURACY_JSON
            if not file.is_file():
                raise FileNotFoundError(f"Report: {file} is missing from the {source} proposals store: rerun it "
                                        f"(--TSCProposals-force --TSCProposals-source {source})")
            tables[source] = json.loads(file.read_text())
        return boundary_accuracy_section(tables, subsets, {s: Path(t.path).name for s, t in stores.items()})

    def run(self):
        from tal_pipeline.stages.evaluation.report import write_report
        from tal_pipeline.stages.evaluation.report_plots import ExampleInputs

        inputs = self.input()
        # Each run's training health check (its TrainDetector's health.json): the report flags, never drops, a sick run.
        evaluations = [{**json.loads((Path(t.path) / "evaluation.json").read_text()),
                        "health": json.loads((Path(inputs["trainings"][v].path) / "health.json").read_text())}
                       for v, t in inputs["evaluations"].items()]
        detections = {v: json.loads((Path(t.path) / "detections.json").read_text())["results"]
                      for v, t in inputs["detections"].items()}
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
        with self.writer() as folder:
            write_report(folder, evaluations, recall, encoder, examples, artifacts=artifacts,
                         boundary_accuracy=self.boundary_accuracy(inputs["boundaries"]))
        latest = Path(config.PathsConfig().workdir) / "report"
        shutil.rmtree(latest, ignore_errors=True)
        shutil.copytree(self.output().path, latest)
        log.info("report: %s (copied to %s)", Path(self.output().path) / "report.md", latest / "report.md")


class FullRun(luigi.WrapperTask):
    """The whole chain on the configured dataset (the synthetic one when none is configured)."""

    def requires(self):
        return Report()
