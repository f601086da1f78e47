"""Detector tasks: TrainDetector -> Detect for one variant (detector, with or without BAPG and from which
boundaries, seed), on the features of pipeline.data_tasks and, for +BAPG, pipeline.bapg_tasks' ProposalFeatures.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import luigi

from pipeline.bapg_tasks import GroupsParameter, ProposalFeatures, SimilarityMatrices, TrainEncoder, TSCProposals
from pipeline.base import StageTask, gpu_resources, task_threads, upstream, write_csv
from pipeline.data_tasks import ExtractFeatures, SampleFrames, dataset_annotations, features_task
from tal_pipeline.stages.bapg.proposal_features import DEFAULT_GROUPS
from tal_pipeline.stages.bapg.proposals import BOUNDARY_SOURCES
from tal_pipeline.stages.evaluation.variant import Variant
from tal_pipeline.stages.precision import DEFAULT_PRECISION
from tal_pipeline.storage.training_board import TrainingBoard

log = logging.getLogger("pipeline")


def variant_params(variant: Variant) -> dict:
    """The DetectorTask parameters of `variant` (Detect(**variant_params(v)), ...)."""
    return {"detector": variant.detector, "use_bapg": variant.bapg, "bapg_source": variant.source or "tsc",
            "bapg_groups": list(variant.groups or DEFAULT_GROUPS), "seed": variant.seed,
            "untrained": variant.untrained}


# The names of models.detector_registry.DETECTORS, written out so that importing the tasks loads no torch
# (tests/test_task_graph.py checks they agree).
DETECTOR_NAMES = ["afsd", "actionformer", "tridet", "tadtr"]


class DetectorTask(StageTask):
    """Shared parameters of a detector variant: which detector, with or without BAPG (from which boundaries, with
    which channel groups), which seed, and the detector's model / training / fusion settings (JSON, all part of
    the artifact hash)."""

    detector = luigi.ChoiceParameter(default="actionformer", choices=DETECTOR_NAMES)
    use_bapg = luigi.BoolParameter(default=False, description="fuse ProposalFeatures into the video features")
    bapg_source = luigi.ChoiceParameter(default="tsc", choices=BOUNDARY_SOURCES,
                                        description="with --use-bapg: boundaries from tsc (the method), raw (TSC "
                                                    "without encoder), random (same counts) or oracle (ground truth)")
    bapg_groups = GroupsParameter(default=list(DEFAULT_GROUPS),
                                  description="with --use-bapg: the channel groups of B (ProposalFeatures --groups): "
                                              "pooled, boundary, novelty, strength")
    seed = luigi.IntParameter(default=0)
    untrained = luigi.BoolParameter(default=False, description="keep the initial weights: the report's sanity "
                                                               "baseline that training must beat by far")
    device = luigi.Parameter(default="auto", significant=False, description="auto | cpu | cuda | cuda:N")

    def run_variant(self) -> Variant:
        """The detector variant this task computes (written into detections and evaluations as "variant")."""
        return Variant.of(self.detector, self.use_bapg, self.bapg_source, self.seed, self.untrained, self.bapg_groups)

    def variant(self) -> dict:
        """The parameters that name this detector variant, passed on to the tasks it requires."""
        return variant_params(self.run_variant())

    def shaping_params(self) -> dict:
        params = super().shaping_params()
        # The boundary source and groups do not shape a baseline; the default groups keep the path they had
        # before groups existed.
        drop = {"bapg_source", "bapg_groups"} if not self.use_bapg else \
            {"bapg_groups"} if tuple(self.bapg_groups) == DEFAULT_GROUPS else set()
        params["params"] = {k: v for k, v in params["params"].items() if k not in drop}
        return params

    def feature_inputs(self) -> dict:
        inputs = {"features": features_task()}
        if self.use_bapg:
            inputs["bapg"] = ProposalFeatures(source=self.bapg_source, groups=list(self.bapg_groups))
        return inputs

    def load_features(self, subset: str):
        from tal_pipeline.storage.features import load_feature_dict

        ann = dataset_annotations(self.data).subset(subset)
        bapg = self.input()["bapg"].path if self.use_bapg else None
        features, grids = load_feature_dict(self.input()["features"].path, ann.videos["video"].tolist(), bapg)
        return ann, features, grids

    def class_agnostic(self) -> bool:
        """Whether this detector trains (trained) class-agnostic: its resolved `class_agnostic` training setting (the
        anet preset sets it); its detections then take their classes from ClassifyVideos (FuseVideoClasses)."""
        from pipeline.config import detector_settings
        from tal_pipeline.stages.detectors.training import resolve_train_config

        return bool(resolve_train_config(self.detector, detector_settings(self.detector)["train"])["class_agnostic"])

    def bapg_channels(self) -> int:
        from tal_pipeline.storage.zarr_store import ArtifactStore

        if not self.use_bapg:
            return 0
        store = ArtifactStore(self.input()["bapg"].path)
        return int(store.read(store.videos()[0]).shape[1])


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

    def settings(self) -> dict:
        """Model, training and fusion settings of this detector ([afsd] / [actionformer] in luigi.cfg)."""
        from pipeline.config import detector_settings

        settings = detector_settings(self.detector)
        settings.pop("post")  # Detect's (post-processing shapes the detections, not the detector)
        if self.epochs:
            settings["train"]["epochs"] = self.epochs
        if self.untrained:
            settings["train"]["epochs"] = 0
        if not self.use_bapg:
            settings.pop("fusion")
        return settings

    def shaping_params(self) -> dict:
        from tal_pipeline.stages.detectors.training import RECIPE_KEY_DEFAULTS, resolve_train_config

        settings = self.settings()
        # The resolved training settings (given values over the detector's recipe over DEFAULT_TRAIN), not only the
        # given ones: a changed recipe default must not leave an artifact trained with the old one looking current.
        # Recipe-shaped settings at their defaults and the small recipe's name are left out: the paths of the runs
        # from before recipes had names stay.
        train = resolve_train_config(self.detector, settings["train"])
        # Keys at their defaults keep the artifact paths of before they existed: the recipe keys of the published
        # recipes, and fp32 (the default precision; bf16 shapes the path).
        settings["train"] = {k: v for k, v in train.items() if k not in ("model", "fusion") and
                             not (k in RECIPE_KEY_DEFAULTS and v == RECIPE_KEY_DEFAULTS[k]) and
                             not (k == "precision" and v == DEFAULT_PRECISION)}
        if settings["recipe"] == "small":
            settings.pop("recipe")
        return {**super().shaping_params(), "settings": settings}

    def requires(self):
        inputs = self.feature_inputs()
        encoder = self._encoder(inputs)
        if encoder is not None:  # its checkpoint goes into this one (run)
            inputs["encoder"] = encoder
        return inputs

    @staticmethod
    def _encoder(inputs: dict):
        """The contrastive encoder behind the +BAPG boundaries (the one trained on every training video), or None
        when they come without one (raw: S of the features; oracle: ground truth)."""
        similarity = upstream(inputs["bapg"], SimilarityMatrices) if "bapg" in inputs else None
        if similarity is None or not similarity.use_encoder:
            return None
        return upstream(similarity, TrainEncoder, where=lambda t: not t.folds)

    def run(self):
        import torch

        from tal_pipeline.stages.detectors.training import train_detector
        from tal_pipeline.storage.manifest import verified_file

        torch.set_num_threads(task_threads())
        ann, features, grids = self.load_features(self.data.train_subset)
        labels = dataset_annotations(self.data).labels
        settings = self.settings()
        config = {**settings["train"], "model": settings["model"], "fusion": settings.get("fusion", {})}

        board = TrainingBoard(self.output().path)  # live TensorBoard events in the run's folder
        state, cfg, log_rows = train_detector(self.detector, features, ann.actions, labels, grids, config,
                                              seed=self.seed, device=self.device, deterministic=self.deterministic,
                                              bapg_channels=self.bapg_channels(), on_log=board.rows,
                                              on_epoch=lambda done, total: self.report_progress(done, total, "epochs"))
        recipe = self.inference_recipe()
        # cfg["labels"]: the dataset's classes, or [FOREGROUND] for a class-agnostic detector
        cfg = {**cfg, "use_bapg": self.use_bapg, "train_videos": sorted(features), "inputs": recipe.to_dict(),
               "recipe": settings["recipe"]}
        if self.use_bapg:
            cfg["bapg_groups"] = list(self.bapg_groups)
        health = cfg["health"]
        board.figures("health", health, cfg["iterations"])
        if health["healthy"] is False:
            log.warning("detector %s seed %d: UNHEALTHY training run: %s", self.detector + (" + BAPG" if self.use_bapg
                        else ""), self.seed, "; ".join(health["problems"]))
        checkpoint = {"state": state, "config": cfg}
        if recipe.bapg is not None and recipe.bapg.use_encoder:
            # Self-contained: single-video inference rebuilds the BAPG features without the run folder.
            encoder_file = Path(self.input()["encoder"].path) / "checkpoint.pt"
            encoder = torch.load(verified_file(encoder_file), map_location="cpu", weights_only=True)
            checkpoint["encoder"] = {"state": encoder["state"], "config": encoder["config"]}
        with self.output().writer() as folder:
            torch.save(checkpoint, folder / "checkpoint.pt")
            (folder / "config.json").write_text(json.dumps(cfg, indent=1, default=str))
            (folder / "health.json").write_text(json.dumps(health, indent=1))
            write_csv(folder / "train_log.csv", log_rows)
            board.move_into(folder)

    def inference_recipe(self):
        """How this detector's input was made from a raw video (stages.recipe), for `tal-pipeline detect`: the
        parameters of the tasks this one requires and of those they require in turn."""
        from tal_pipeline.stages.bapg.proposal_features import PROJECTION_SEED
        from tal_pipeline.stages.detectors.recipe import (
            BapgRecipe,
            DetectorInputRecipe,
            FeaturesRecipe,
            FramesRecipe,
            InferenceRecipe,
        )
        from tal_pipeline.stages.detectors.training import resolve_train_config

        inputs = self.requires()
        feats = inputs["features"]
        frames = upstream(feats, SampleFrames)  # None for imported features
        bapg = None
        if self.use_bapg:
            pf = inputs["bapg"]
            tsc = upstream(pf, TSCProposals, where=lambda t: t.source == pf.source)
            similarity = upstream(pf, SimilarityMatrices)  # None for the oracle: no S
            bapg = BapgRecipe(source=pf.source, use_encoder="encoder" in inputs,
                              block=similarity.block if similarity is not None else None,
                              **asdict(tsc.scales()), max_union=tsc.max_union,
                              projection_dim=pf.projection_dim, projection_seed=PROJECTION_SEED,
                              groups=tuple(pf.groups))
        return InferenceRecipe(
            features=FeaturesRecipe(task=type(feats).__name__, **dict(zip(("window", "stride"), feats.feature_grid())),
                                    weights=feats.weights_name if isinstance(feats, ExtractFeatures) else None),
            frames=FramesRecipe(fps=frames.fps, size=frames.frame_size) if frames is not None else None,
            bapg=bapg, detector_input=DetectorInputRecipe(**{
                k: resolve_train_config(self.detector, self.settings()["train"])[key]
                for k, key in (("length", "input_length"), ("class_agnostic", "class_agnostic"))}))


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

    def postprocessing(self) -> dict:
        """{"max_dets", "nms_sigma" (None: the detector's own), "voting_thresh"}: given values over the detector
        recipe's (published: the reference's test settings) over the preset's."""
        from pipeline.config import dataset_preset, detector_settings

        preset = dataset_preset()
        exempt = self.detector in preset.nms_exempt
        default = {"max_dets": preset.max_dets, "nms_sigma": None if exempt else preset.nms_sigma,
                   "voting_thresh": 0.0 if exempt else preset.voting_thresh,
                   **detector_settings(self.detector)["post"]}
        return {"max_dets": int(default["max_dets"] if self.max_dets is None else self.max_dets),
                "nms_sigma": default["nms_sigma"] if self.nms_sigma is None else self.nms_sigma,
                "voting_thresh": float(default["voting_thresh"] if self.voting_thresh is None
                                       else self.voting_thresh)}

    def shaping_params(self) -> dict:
        params = super().shaping_params()
        post = self.postprocessing()
        # The resolved values; the detector's own Soft-NMS and no voting keep the path of before they existed.
        params["params"] = {k: v for k, v in params["params"].items() if k not in ("nms_sigma", "voting_thresh")}
        params["params"]["max_dets"] = post["max_dets"]
        if post["nms_sigma"] is not None:
            params["params"]["nms_sigma"] = post["nms_sigma"]
        if post["voting_thresh"]:
            params["params"]["voting_thresh"] = post["voting_thresh"]
        return params

    def requires(self):
        return {"model": TrainDetector(**self.variant()),
                **self.feature_inputs()}

    def run(self):
        from tal_pipeline.stages.detectors.detection import detect
        from tal_pipeline.stages.detectors.inference import checkpoint_file, load_checkpoint_file

        ckpt = load_checkpoint_file(checkpoint_file(self.input()["model"].path))
        ann, features, grids = self.load_features(self.data.test_subset)
        durations = {v: ann.duration(v) for v in features}
        post = self.postprocessing()
        results = detect(self.detector, ckpt["state"], ckpt["config"], features, ckpt["config"]["labels"], grids,
                         durations, max_dets=post["max_dets"], device=self.device, nms_sigma=post["nms_sigma"],
                         voting_thresh=post["voting_thresh"])
        payload = {"version": "tal-pipeline", "results": results, "external_data": self.run_variant().record(),
                   "postprocessing": post}
        with self.output().writer() as folder:
            (folder / "detections.json").write_text(json.dumps(payload))
