"""Detector tasks: TrainDetector -> Detect for one variant (detector, with or without BAPG and from which
boundaries, seed), on the features of pipeline.data_tasks and, for +BAPG, pipeline.bapg_tasks' ProposalFeatures.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import luigi

from pipeline.bapg_tasks import GroupsParameter, ProposalFeatures, TrainEncoder
from pipeline.base import StageTask, gpu_resources, task_threads, write_csv
from pipeline.data_tasks import dataset_annotations, features_task
from pipeline.detectors import DetectorParameter
from pipeline.specs import DetectorSpec, DetectSpec, detector_spec
from tal_pipeline.stages.bapg.proposal_features import DEFAULT_GROUPS
from tal_pipeline.stages.bapg.proposals import BOUNDARY_SOURCES
from tal_pipeline.stages.evaluation.variant import Variant
from tal_pipeline.storage.training_board import TrainingBoard

log = logging.getLogger("pipeline")


def variant_params(variant: Variant) -> dict:
    """The DetectorTask parameters of `variant` (Detect(**variant_params(v)), ...): the same names."""
    return {**variant._asdict(), "bapg_source": variant.bapg_source or "tsc",
            "bapg_groups": list(variant.bapg_groups or DEFAULT_GROUPS)}


class DetectorTask(StageTask):
    """Shared parameters of a detector variant: which detector, with or without BAPG (from which boundaries, with
    which channel groups), which seed, trained or not (Variant's fields, under the same names)."""

    detector = DetectorParameter(default="actionformer", description="a registered detector (pipeline.detectors): "
                                                                     "afsd, actionformer, tridet, tadtr, ...")
    bapg = luigi.BoolParameter(default=False, description="fuse ProposalFeatures into the video features")
    bapg_source = luigi.ChoiceParameter(default="tsc", choices=BOUNDARY_SOURCES,
                                        description="with --bapg: boundaries from tsc (the method), raw (TSC "
                                                    "without encoder), random (same counts) or oracle (ground truth)")
    bapg_groups = GroupsParameter(default=list(DEFAULT_GROUPS),
                                  description="with --bapg: the channel groups of B (ProposalFeatures --groups): "
                                              "pooled, boundary, novelty, strength")
    seed = luigi.IntParameter(default=0)
    untrained = luigi.BoolParameter(default=False, description="keep the initial weights: the report's sanity "
                                                               "baseline that training must beat by far")
    device = luigi.Parameter(default="auto", significant=False, description="auto | cpu | cuda | cuda:N")

    def run_variant(self) -> Variant:
        """The detector variant this task computes (written into detections and evaluations as "variant")."""
        return Variant.of(self.detector, self.bapg, self.bapg_source, self.seed, self.untrained, self.bapg_groups)

    def variant(self) -> dict:
        """The parameters that name this detector variant, passed on to the tasks it requires."""
        return variant_params(self.run_variant())

    def trained(self) -> TrainDetector:
        """The TrainDetector of this variant (its spec holds the detector's resolved settings)."""
        return TrainDetector(**self.variant())

    def feature_inputs(self) -> dict:
        inputs = {"features": features_task()}
        if self.bapg:
            inputs["bapg"] = ProposalFeatures(source=self.bapg_source, groups=list(self.bapg_groups))
        return inputs

    def load_features(self, subset: str):
        from tal_pipeline.storage.features import load_feature_dict

        ann = dataset_annotations(self.data).subset(subset)
        bapg = self.input()["bapg"].path if self.bapg else None
        features, grids = load_feature_dict(self.input()["features"].path, ann.videos["video"].tolist(), bapg)
        return ann, features, grids


class TrainDetector(DetectorTask):
    """Train one detector variant on the training subset; checkpoint = EMA weights after the last epoch, the
    fully resolved model / training / fusion settings, the health check and the inference recipe."""

    artifact = "detector"
    suffix = ""

    @property
    def resources(self):  # GPU stages share a GPU only as [resources] gpu allows (pipeline.base.gpu_resources)
        return gpu_resources(self.device)

    epochs = luigi.IntParameter(default=0, description="0: the detector's recipe (or [<detector>] train epochs)")
    deterministic = luigi.BoolParameter(default=False, significant=False,
                                        description="cuDNN's and torch's deterministic algorithms, so a seeded CUDA "
                                                    "run repeats exactly (slower; stages.runtime.deterministic_mode)")

    def spec(self) -> DetectorSpec:
        """The settings of [<detector>] over its recipe, resolved once; the BAPG width from ProposalFeatures' spec."""
        channels = self.requires()["bapg"].spec().channels if self.bapg else 0
        return detector_spec(self.detector, self.bapg, self.bapg_source, self.bapg_groups, self.seed, self.untrained,
                             self.epochs, channels)

    def requires(self):
        inputs = self.feature_inputs()
        if self.bapg:
            similarity = inputs["bapg"].similarity_task()
            if similarity is not None and similarity.use_encoder:  # its checkpoint goes into this one (run)
                inputs["encoder"] = TrainEncoder()
        return inputs

    def run(self):
        import torch

        from tal_pipeline.stages.detectors.training import train_detector

        torch.set_num_threads(task_threads())
        spec = self.spec()
        ann, features, grids = self.load_features(self.data.train_subset)
        self.check_width(features, spec)
        config = {**spec.train, "model": spec.model, "fusion": spec.fusion or {}}
        board = TrainingBoard(self.output().path)  # live TensorBoard events in the run's folder
        labels = dataset_annotations(self.data).labels
        state, cfg, log_rows = train_detector(spec.detector, features, ann.actions, labels, grids, config,
                                              seed=spec.seed, device=self.device,
                                              deterministic=self.deterministic, bapg_channels=spec.bapg_channels,
                                              on_log=board.rows,
                                              on_epoch=lambda done, total: self.report_progress(done, total, "epochs"))
        recipe = self.inference_recipe()
        # cfg["labels"]: the dataset's classes, or [FOREGROUND] for a class-agnostic detector
        cfg = {**cfg, "bapg": spec.bapg, "train_videos": sorted(features), "inputs": recipe.to_dict(),
               "recipe": spec.recipe, "bapg_groups": list(spec.bapg_groups) if spec.bapg else None}
        health = cfg["health"]
        board.figures("health", health, cfg["iterations"])
        if health["healthy"] is False:
            log.warning("detector %s seed %d: UNHEALTHY training run: %s", spec.detector + (" + BAPG" if spec.bapg
                        else ""), spec.seed, "; ".join(health["problems"]))
        checkpoint = {"state": state, "config": {**cfg, "spec": self.spec_record()}}
        if recipe.bapg is not None and recipe.bapg.use_encoder:
            checkpoint["encoder"] = self.encoder_checkpoint()  # single-video inference needs no run folder
        with self.writer() as folder:
            torch.save(checkpoint, folder / "checkpoint.pt")
            (folder / "config.json").write_text(json.dumps(cfg, indent=1, default=str))
            (folder / "health.json").write_text(json.dumps(health, indent=1))
            write_csv(folder / "train_log.csv", log_rows)
            board.move_into(folder)

    def check_width(self, features: dict, spec: DetectorSpec) -> None:
        """Every training input is the features' width plus B's, as the specs say (ValueError naming a video)."""
        width = self.requires()["features"].spec().width + spec.bapg_channels
        for video, x in features.items():
            if x.shape[1] != width:
                raise ValueError(f"TrainDetector: video {video!r} has {x.shape[1]} input channels, the specs say "
                                 f"{width} (features + {spec.bapg_channels} BAPG channels)")

    def encoder_checkpoint(self) -> dict:
        import torch

        from tal_pipeline.storage.manifest import verified_file

        encoder_file = Path(self.input()["encoder"].path) / "checkpoint.pt"
        encoder = torch.load(verified_file(encoder_file), map_location="cpu", weights_only=True)
        return {"state": encoder["state"], "config": encoder["config"]}

    def inference_recipe(self):
        """How this detector's input was made from a raw video (stages.detectors.recipe), for `tal-pipeline
        detect`: the specs of the tasks this one reads, and of those they read."""
        from tal_pipeline.stages.detectors.recipe import (
            BapgRecipe,
            DetectorInputRecipe,
            FeaturesRecipe,
            InferenceRecipe,
        )

        inputs, spec = self.requires(), self.spec()
        features = inputs["features"].spec()
        frames = inputs["features"].requires()["frames"].spec() if features.task == "ExtractFeatures" else None
        bapg = None
        if self.bapg:
            pf = inputs["bapg"].spec()
            proposals = inputs["bapg"].requires()["proposals"]
            similarity = inputs["bapg"].similarity_task()
            bapg = BapgRecipe(source=pf.source, use_encoder="encoder" in inputs,
                              block=similarity.spec().block if similarity is not None else None,
                              **asdict(proposals.spec().scales), max_union=proposals.spec().max_union,
                              projection_dim=pf.projection_dim, projection_seed=pf.projection_seed, groups=pf.groups)
        return InferenceRecipe(
            features=FeaturesRecipe(task=features.task, window=features.window, stride=features.stride,
                                    weights=features.weights),
            frames=frames, bapg=bapg,
            detector_input=DetectorInputRecipe(length=spec.train["input_length"],
                                               class_agnostic=spec.train["class_agnostic"]))


class Detect(DetectorTask):
    """Detections on the test subset, ActivityNet results JSON (capped per video, clipped, multi-label). Unset
    post-processing values come from the dataset preset (stages.presets; thumos14: 200 per video, the detector's
    own Soft-NMS, no voting)."""

    artifact = "detections"
    suffix = ""
    max_dets = luigi.OptionalIntParameter(default=None, description="detections kept per video (empty: the "
                                                                    "preset's, thumos14 200, anet 100)")
    nms_sigma = luigi.OptionalFloatParameter(default=None, description="Soft-NMS sigma (empty: the preset's; "
                                                                       "thumos14: the detector's own, anet 0.75)")
    voting_thresh = luigi.OptionalFloatParameter(default=None, description="segment voting tIoU, 0: off (empty: the "
                                                                           "preset's; thumos14 0, anet 0.9)")

    @property
    def resources(self):  # inference on device auto uses CUDA too: never beside a TrainDetector on one GPU
        return gpu_resources(self.device)

    def spec(self) -> DetectSpec:
        """Given values over the detector recipe's (published: the reference's test settings) over the preset's
        (nms_sigma None: the detector's own Soft-NMS)."""
        from pipeline.config import dataset_preset, detector_settings

        preset = dataset_preset()
        exempt = self.detector in preset.nms_exempt
        default = {"max_dets": preset.max_dets, "nms_sigma": None if exempt else preset.nms_sigma,
                   "voting_thresh": 0.0 if exempt else preset.voting_thresh,
                   **detector_settings(self.detector)["post"]}
        sigma = default["nms_sigma"] if self.nms_sigma is None else self.nms_sigma
        return DetectSpec(max_dets=int(default["max_dets"] if self.max_dets is None else self.max_dets),
                          nms_sigma=None if sigma is None else float(sigma),
                          voting_thresh=float(default["voting_thresh"] if self.voting_thresh is None
                                              else self.voting_thresh))

    def requires(self):
        return {"model": self.trained(), **self.feature_inputs()}

    def run(self):
        from tal_pipeline.stages.detectors.detection import detect
        from tal_pipeline.stages.detectors.inference import checkpoint_file, load_checkpoint_file

        ckpt = load_checkpoint_file(checkpoint_file(self.input()["model"].path))
        ann, features, grids = self.load_features(self.data.test_subset)
        durations = {v: ann.duration(v) for v in features}
        post = self.spec()
        results = detect(self.detector, ckpt["state"], ckpt["config"], features, ckpt["config"]["labels"], grids,
                         durations, max_dets=post.max_dets, device=self.device, nms_sigma=post.nms_sigma,
                         voting_thresh=post.voting_thresh)
        payload = {"version": "tal-pipeline", "results": results, "external_data": self.run_variant().record(),
                   "postprocessing": asdict(post)}
        with self.writer() as folder:
            (folder / "detections.json").write_text(json.dumps(payload))
