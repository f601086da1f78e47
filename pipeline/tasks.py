"""The luigi tasks: each a few lines that call a pure stage function.

Chain: SyntheticDataset (when no dataset is configured) -> SampleFrames -> ExtractFeatures |
ImportFeatures -> (pipeline.bapg_tasks) TrainEncoder -> SimilarityMatrices -> TSCProposals ->
ProposalFeatures -> TrainDetector -> Detect -> (pipeline.report_tasks) Evaluate -> Report -> FullRun.
Heavy imports (torch, Numba) happen inside run(), never at import time (luigi may fork workers).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import luigi

from pipeline import dataset
from pipeline.base import DoneFileTarget, StageTask, gpu_resources, task_threads
from pipeline.hashing import param_hash
from pipeline.stages.proposals import SOURCES
from pipeline.storage.annotations import Annotations, load_annotations

log = logging.getLogger("pipeline")


def dataset_annotations(spec: dataset.DatasetSpec) -> Annotations:
    """Train and test subsets of the configured annotations (both must exist)."""
    ann = load_annotations(spec.annotations)
    train, test = ann.subset(spec.train_subset), ann.subset(spec.test_subset)
    keep = set(train.videos["video"]) | set(test.videos["video"])
    videos = ann.videos[ann.videos["video"].isin(keep)].reset_index(drop=True)
    instances = ann.instances[ann.instances["video"].isin(keep)].reset_index(drop=True)
    return Annotations(videos, instances, ann.source, ann.warnings)


class SyntheticDataset(luigi.Task):
    """The built-in synthetic dataset (mp4 files + annotations.json), generated once per parameters."""

    def output(self):
        return DoneFileTarget(dataset.synthetic_dir())

    def run(self):
        from pipeline.stages.synthetic import generate

        params = dataset.synthetic_params()
        folder = Path(self.output().path)
        tmp = folder.with_name(folder.name + ".tmp")
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        generate(tmp, videos=params["videos"], seed=params["seed"], duration=params["duration"], size=params["size"])
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        (folder / "DONE").write_text(param_hash(params) + "\n")


class DatasetStage(StageTask):
    """A stage whose chain starts at the dataset: requires the synthetic one when none is configured."""

    skip_bad_videos = luigi.BoolParameter(default=False, significant=False,
                                          description="mark the stage complete without the videos that failed")

    def dataset_requirement(self):
        return SyntheticDataset() if self.data.synthetic else None


class SampleFrames(DatasetStage):
    """Frames sampled by presentation time at `fps`, short side `size`, centre crop (frames.zarr)."""

    artifact = "frames"
    fps = luigi.FloatParameter(default=8.0, description="target sampling rate (frames per second)")
    size = luigi.IntParameter(default=0, description="output frame size (short side resize, centre crop); "
                                                     "0: 64 for the synthetic dataset, 224 otherwise")

    @property
    def frame_size(self) -> int:
        # 64 px keeps the default synthetic run within budget on 2 cores (benchmarks/bench_i3d.py).
        return self.size or (64 if self.data.synthetic else 224)

    def shaping_params(self) -> dict:
        return {**super().shaping_params(), "frame_size": self.frame_size}

    def requires(self):
        return self.dataset_requirement()

    def run(self):
        from pipeline.stages.sample_frames import sample_frames_to_store

        videos = dataset_annotations(self.data).videos["video"].tolist()
        self.run_videos(sample_frames_to_store, videos, self.skip_bad_videos,
                        videos_dir=self.data.videos, fps=self.fps, size=self.frame_size)


class ExtractFeatures(DatasetStage):
    """I3D RGB features (Kinetics-400 weights) over sliding windows of the sampled frames."""

    artifact = "features"

    @property
    def resources(self):  # two GPU stages never share one GPU (pipeline.base.gpu_resources)
        return gpu_resources()

    window = luigi.IntParameter(default=16, description="frames per I3D window")
    stride = luigi.IntParameter(default=4, description="frames between windows")
    device = luigi.Parameter(default="auto", significant=False, description="auto | cpu | cuda | cuda:N")
    batch_size = luigi.IntParameter(default=0, significant=False, description="windows per forward pass; 0: auto")

    def requires(self):
        return SampleFrames()

    def shaping_params(self) -> dict:
        # The weights are part of what shapes the features (their sha256 is recorded per video).
        return {**super().shaping_params(), "weights": "i3d-rgb-k400"}

    def run(self):
        from pipeline.models.i3d_weights import ensure_i3d_weights, weights_sha256
        from pipeline.stages.features import extract_video_features
        from pipeline.stages.parallel import threads_per_worker

        weights = ensure_i3d_weights(progress=log.info)
        frames = self.input().store
        videos = sorted(frames.completion()["videos"])
        scheduler, workers = self.dask_scheduler()
        self.run_videos(extract_video_features, videos, self.skip_bad_videos, frames_store=str(frames.path),
                        window=self.window, stride=self.stride, weights=str(weights),
                        weights_sha256=weights_sha256(weights), device=self.device, batch_size=self.batch_size,
                        num_threads=threads_per_worker(scheduler, workers))

    def dask_scheduler(self):
        # torch parallelises one video over all cores; locally, run videos one after another.
        scheduler, workers = super().dask_scheduler()
        return scheduler, (workers or 1)


def features_task():
    """ImportFeatures when the dataset names a features source, else ExtractFeatures."""
    return ImportFeatures() if dataset.current().features else ExtractFeatures()


class ImportFeatures(DatasetStage):
    """Precomputed features (.npy folder or HDF5) validated into features.zarr."""

    artifact = "features"
    window = luigi.IntParameter(default=16, description="frames per feature window of the source features")
    stride = luigi.IntParameter(default=4, description="frames between feature windows")
    fps = luigi.FloatParameter(default=0.0, description="frame rate of the feature grid; 0: each video's fps")
    width = luigi.IntParameter(default=0, description="expected feature width; 0: that of the first video")

    def requires(self):
        return None

    def run(self):
        from pipeline.stages.import_features import import_video_features, infer_width

        ann = dataset_annotations(self.data)
        videos = ann.videos["video"].tolist()
        width = self.width or infer_width(self.data.features, videos)
        fps = dict(zip(ann.videos["video"], ann.videos["fps"]))
        if not self.fps and any(f != f for f in fps.values()):
            missing = [v for v, f in fps.items() if f != f][:5]
            raise ValueError(f"ImportFeatures: no fps in the annotations for {missing}: set --ImportFeatures-fps")
        self.run_videos(import_video_features, videos, self.skip_bad_videos, source=self.data.features,
                        fps_by_video={v: (self.fps or fps[v]) for v in videos}, window=self.window,
                        stride=self.stride, width=width)


class DetectorTask(StageTask):
    """Shared parameters of a detector variant: which detector, with or without BAPG (and from which boundaries),
    which seed, and the detector's model / training / fusion settings (JSON, all part of the artifact hash)."""

    detector = luigi.ChoiceParameter(default="actionformer", choices=["afsd", "actionformer"])
    use_bapg = luigi.BoolParameter(default=False, description="fuse ProposalFeatures into the video features")
    bapg_source = luigi.ChoiceParameter(default="tsc", choices=SOURCES,
                                        description="with --use-bapg: boundaries from tsc (the method), raw (TSC "
                                                    "without encoder), random (same counts) or oracle (ground truth)")
    seed = luigi.IntParameter(default=0)
    untrained = luigi.BoolParameter(default=False, description="keep the initial weights: the report's sanity "
                                                               "baseline that training must beat by far")
    device = luigi.Parameter(default="auto", significant=False, description="auto | cpu | cuda | cuda:N")

    def variant(self) -> dict:
        """The parameters that name this detector variant, passed on to the tasks it requires."""
        return {"detector": self.detector, "use_bapg": self.use_bapg, "bapg_source": self.bapg_source,
                "seed": self.seed, "untrained": self.untrained}

    def variant_record(self) -> dict:
        """The variant as written into detections and evaluations (what the report groups by)."""
        return {"detector": self.detector, "bapg": self.use_bapg, "bapg_source": self.bapg_source if self.use_bapg
                else None, "seed": self.seed, "untrained": self.untrained}

    def shaping_params(self) -> dict:
        params = super().shaping_params()
        if not self.use_bapg:  # the boundary source does not shape a baseline
            params["params"] = {k: v for k, v in params["params"].items() if k != "bapg_source"}
        return params

    def feature_inputs(self) -> dict:
        from pipeline.bapg_tasks import ProposalFeatures  # the BAPG tasks build on this module

        inputs = {"features": features_task()}
        if self.use_bapg:
            inputs["bapg"] = ProposalFeatures(source=self.bapg_source)
        return inputs

    def load_features(self, subset: str):
        from pipeline.storage.features import load_feature_dict

        ann = dataset_annotations(self.data).subset(subset)
        bapg = self.input()["bapg"].path if self.use_bapg else None
        features, grids = load_feature_dict(self.input()["features"].path, ann.videos["video"].tolist(), bapg)
        return ann, features, grids

    def bapg_channels(self) -> int:
        from pipeline.storage.zarr_store import ArtifactStore

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
    def resources(self):  # two GPU stages never share one GPU (pipeline.base.gpu_resources)
        return gpu_resources()

    epochs = luigi.IntParameter(default=0, description="0: the detector's recipe (or [<detector>] train epochs)")

    def settings(self) -> dict:
        """Model, training and fusion settings of this detector ([afsd] / [actionformer] in luigi.cfg)."""
        from pipeline.config import detector_settings

        settings = detector_settings(self.detector)
        if self.epochs:
            settings["train"]["epochs"] = self.epochs
        if self.untrained:
            settings["train"]["epochs"] = 0
        if not self.use_bapg:
            settings.pop("fusion")
        return settings

    def shaping_params(self) -> dict:
        return {**super().shaping_params(), "settings": self.settings()}

    def requires(self):
        return self.feature_inputs()

    def run(self):
        import torch

        from pipeline.stages.detection import train_detector

        torch.set_num_threads(task_threads())
        ann, features, grids = self.load_features(self.data.train_subset)
        labels = dataset_annotations(self.data).labels
        settings = self.settings()
        config = {**settings["train"], "model": settings["model"], "fusion": settings.get("fusion", {})}

        def on_epoch(done: int, total: int) -> None:
            self.set_progress_percentage(round(100 * done / max(total, 1)))
            self.set_status_message(f"epoch {done}/{total}")

        state, cfg, log_rows = train_detector(self.detector, features, ann.actions, labels, grids, config,
                                              seed=self.seed, device=self.device,
                                              bapg_channels=self.bapg_channels(), on_epoch=on_epoch)
        cfg = {**cfg, "use_bapg": self.use_bapg, "labels": labels, "train_videos": sorted(features),
               "inputs": self.inference_recipe()}
        health = cfg["health"]
        if health["healthy"] is False:
            log.warning("detector %s seed %d: UNHEALTHY training run: %s", self.detector + (" + BAPG" if self.use_bapg
                        else ""), self.seed, "; ".join(health["problems"]))
        checkpoint = {"state": state, "config": cfg}
        if self.use_bapg and cfg["inputs"]["bapg"]["use_encoder"]:
            # Self-contained: single-video inference rebuilds the BAPG features without the run folder.
            from pipeline.bapg_tasks import TrainEncoder

            encoder_file = Path(TrainEncoder().output().path) / "checkpoint.pt"
            encoder = torch.load(encoder_file, map_location="cpu", weights_only=True)
            checkpoint["encoder"] = {"state": encoder["state"], "config": encoder["config"]}
        with self.output().writer() as folder:
            torch.save(checkpoint, folder / "checkpoint.pt")
            (folder / "config.json").write_text(json.dumps(cfg, indent=1, default=str))
            (folder / "health.json").write_text(json.dumps(health, indent=1))
            write_csv(folder / "train_log.csv", log_rows)

    def inference_recipe(self) -> dict:
        """How this detector's input was made from a raw video (frames, features, BAPG), for `tal-pipeline detect`."""
        from pipeline.bapg_tasks import ProposalFeatures, SimilarityMatrices, TSCProposals

        feats = features_task()
        recipe: dict = {"features": {"task": type(feats).__name__, "window": feats.window, "stride": feats.stride}}
        if isinstance(feats, ExtractFeatures):
            frames = SampleFrames()
            recipe["frames"] = {"fps": frames.fps, "size": frames.frame_size}
            recipe["features"]["weights"] = "i3d-rgb-k400"
        if self.use_bapg:
            tsc, pf = TSCProposals(source=self.bapg_source), ProposalFeatures(source=self.bapg_source)
            sim = SimilarityMatrices(use_encoder=self.bapg_source != "raw")
            # block: the tiling of S can change the last bit of a float16 entry, so inference tiles the same way.
            recipe["bapg"] = {"source": self.bapg_source, "use_encoder": sim.use_encoder, "block": sim.block,
                              "ms": [int(m) for m in tsc.ms], "rates": [float(r) for r in tsc.rates],
                              "penalty": float(tsc.penalty), "min_size": tsc.min_size, "max_union": tsc.max_union,
                              "projection_dim": pf.projection_dim, "projection_seed": 0}
        return recipe


class Detect(DetectorTask):
    """Detections on the test subset, ActivityNet results JSON (capped per video, clipped, multi-label)."""

    artifact = "detections"
    suffix = ""
    max_dets = luigi.IntParameter(default=200)

    def requires(self):
        return {"model": TrainDetector(**self.variant()),
                **self.feature_inputs()}

    def run(self):
        from pipeline.stages.detection import detect
        from pipeline.stages.inference import checkpoint_file, load_checkpoint_file

        ckpt = load_checkpoint_file(checkpoint_file(self.input()["model"].path))
        ann, features, grids = self.load_features(self.data.test_subset)
        durations = {v: ann.duration(v) for v in features}
        results = detect(self.detector, ckpt["state"], ckpt["config"], features, ckpt["config"]["labels"], grids,
                         durations, max_dets=self.max_dets, device=self.device)
        payload = {"version": "tal-pipeline", "results": results,
                   "external_data": {**self.variant_record(), "health": ckpt["config"].get("health")}}
        with self.output().writer() as folder:
            (folder / "detections.json").write_text(json.dumps(payload))


def write_csv(path: Path, rows: list[dict]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
