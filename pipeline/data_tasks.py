"""Data tasks: the dataset (the built-in synthetic one when none is configured), sampled frames and features.

SyntheticDataset -> SampleFrames -> ExtractFeatures, or ImportFeatures for precomputed features. Each task is a
few lines around a pure function in stages/; heavy imports (torch, PyAV) happen inside run(), never at import
time (luigi may fork workers).
"""
from __future__ import annotations

import logging

import luigi

from pipeline import dataset
from pipeline.base import DoneFileTarget, StageTask, gpu_resources
from pipeline.hashing import param_hash
from tal_pipeline.storage.annotations import Annotations, load_annotations

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
        from tal_pipeline.storage.atomic import atomic_folder
        from tal_pipeline.storage.manifest import write_manifest
        from tal_pipeline.synthetic.videos import generate

        params = dataset.synthetic_params()
        with atomic_folder(self.output().path) as tmp:
            generate(tmp, videos=params["videos"], seed=params["seed"], duration=params["duration"],
                     size=params["size"])
            write_manifest(tmp)
            (tmp / "DONE").write_text(param_hash(params) + "\n")


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
        from tal_pipeline.stages.data.sample_frames import sample_frames_to_store

        videos = dataset_annotations(self.data).videos["video"].tolist()
        self.run_videos(sample_frames_to_store, videos, self.skip_bad_videos,
                        videos_dir=self.data.videos, fps=self.fps, size=self.frame_size)


class ExtractFeatures(DatasetStage):
    """I3D RGB features (Kinetics-400 weights) over sliding windows of the sampled frames."""

    artifact = "features"
    weights_name = "i3d-rgb-k400"  # Kinetics-400 RGB I3D (models/i3d_weights.py)

    @property
    def resources(self):  # two GPU stages never share one GPU (pipeline.base.gpu_resources)
        return gpu_resources()

    window = luigi.IntParameter(default=16, description="frames per I3D window")
    stride = luigi.IntParameter(default=4, description="frames between windows")
    device = luigi.Parameter(default="auto", significant=False, description="auto | cpu | cuda | cuda:N")
    batch_size = luigi.IntParameter(default=0, significant=False, description="windows per forward pass; 0: auto "
                                                                              "(on a GPU: from its free memory)")
    precision = luigi.ChoiceParameter(choices=["fp32", "bf16", "fp16"], default="fp32", significant=False,
                                      description="fp32 on any device, or bf16 / fp16 autocast (for a GPU); a "
                                                  "reduced precision shapes the features' path")

    def requires(self):
        return SampleFrames()

    def feature_grid(self) -> tuple[int, int]:
        return self.window, self.stride

    def shaping_params(self) -> dict:
        # The weights are part of what shapes the features (their sha256 is recorded per video), and so is a
        # reduced precision: fp16 GPU features never share a path with fp32 ones. fp32 adds nothing, so the
        # default path is the one it always was.
        reduced = {"precision": self.precision} if self.precision != "fp32" else {}
        return {**super().shaping_params(), "weights": self.weights_name, **reduced}

    def run(self):
        from tal_pipeline.models.i3d_weights import ensure_i3d_weights, weights_sha256
        from tal_pipeline.stages.data.features import extract_video_features
        from tal_pipeline.stages.parallel import threads_per_worker

        weights = ensure_i3d_weights(progress=log.info)
        frames = self.input().store
        videos = sorted(frames.completion()["videos"])
        scheduler, workers = self.dask_scheduler()
        self.run_videos(extract_video_features, videos, self.skip_bad_videos, frames_store=str(frames.path),
                        window=self.window, stride=self.stride, weights=str(weights),
                        weights_sha256=weights_sha256(weights), device=self.device, batch_size=self.batch_size,
                        num_threads=threads_per_worker(scheduler, workers), precision=self.precision)

    def dask_scheduler(self):
        # torch parallelises one video over all cores; locally, run videos one after another.
        scheduler, workers = super().dask_scheduler()
        return scheduler, (workers or 1)


def features_task():
    """ImportFeatures when the dataset names a features source, else ExtractFeatures."""
    return ImportFeatures() if dataset.current().features else ExtractFeatures()


class ImportFeatures(DatasetStage):
    """Precomputed features (.npy folder or HDF5) validated into features.zarr.

    The grid (window, stride, fps) is the dataset preset's unless given (stages.presets: thumos14 the THUMOS14 I3D
    grid, anet the ActivityNet TSP grid); each video's feature span must match its annotated duration
    (stages/data/feature_span.py), so features on another grid fail, naming the grid that would fit.
    """

    artifact = "features"
    window = luigi.OptionalIntParameter(default=None, description="frames per feature window of the source "
                                                                  "features (default: the dataset preset's, 16)")
    stride = luigi.OptionalIntParameter(default=None, description="frames between feature windows (default: the "
                                                                  "dataset preset's: thumos14 4, anet 16)")
    fps = luigi.OptionalFloatParameter(default=None, description="frame rate of the feature grid; 0: each video's "
                                                                 "fps (default: the preset's: thumos14 0, anet 15)")
    width = luigi.IntParameter(default=0, description="expected feature width; 0: that of the first video")

    def grid(self) -> tuple[int, int, float]:
        """(window, stride, fps) as given, or the dataset preset's (fps 0: each video's)."""
        from pipeline.config import dataset_preset

        preset = dataset_preset().features
        return (int(preset.window if self.window is None else self.window),
                int(preset.stride if self.stride is None else self.stride),
                float((preset.fps or 0.0) if self.fps is None else self.fps))

    def feature_grid(self) -> tuple[int, int]:
        return self.grid()[:2]

    def shaping_params(self) -> dict:
        params = super().shaping_params()
        # the resolved grid shapes the path as given values do (thumos14: 16, 4, 0.0, the paths of before presets)
        params["params"].update(zip(("window", "stride", "fps"), self.grid()))
        return params

    def requires(self):
        return None

    def run(self):
        from tal_pipeline.stages.data.import_features import import_video_features, infer_width

        ann = dataset_annotations(self.data)
        videos = ann.videos["video"].tolist()
        width = self.width or infer_width(self.data.features, videos)
        window, stride, grid_fps = self.grid()
        fps = dict(zip(ann.videos["video"], ann.videos["fps"]))
        if not grid_fps and any(f != f for f in fps.values()):
            missing = [v for v, f in fps.items() if f != f][:5]
            raise ValueError(f"ImportFeatures: no fps in the annotations for {missing}: set --ImportFeatures-fps")
        self.run_videos(import_video_features, videos, self.skip_bad_videos, source=self.data.features,
                        fps_by_video={v: (grid_fps or fps[v]) for v in videos}, window=window, stride=stride,
                        width=width, durations=dict(zip(ann.videos["video"], ann.videos["duration"])),
                        video_fps=fps)


def gt_segments(ann) -> dict:
    """{video: (G, 2) [start, end] seconds} of the non-ambiguous instances, every video of `ann` included."""
    import numpy as np

    actions = ann.actions
    return {v: actions.loc[actions["video"] == v, ["start", "end"]].to_numpy(dtype=np.float64)
            for v in ann.videos["video"]}
