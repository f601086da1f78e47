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
from pipeline.specs import I3D_WEIGHTS, I3D_WIDTH, FeaturesSpec, FramesSpec
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

    def spec(self) -> FramesSpec:
        # size 0: 64 px keeps the default synthetic run within budget on 2 cores (benchmarks/bench_i3d.py)
        return FramesSpec(fps=float(self.fps), size=int(self.size or (64 if self.data.synthetic else 224)))

    def requires(self):
        return self.dataset_requirement()

    def run(self):
        from tal_pipeline.stages.data.sample_frames import sample_frames_to_store

        spec = self.spec()
        videos = dataset_annotations(self.data).videos["video"].tolist()
        self.run_videos(sample_frames_to_store, videos, self.skip_bad_videos,
                        videos_dir=self.data.videos, fps=spec.fps, size=spec.size)


class ExtractFeatures(DatasetStage):
    """I3D RGB features (Kinetics-400 weights) over sliding windows of the sampled frames."""

    artifact = "features"

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
        return {"frames": SampleFrames()}

    def spec(self) -> FeaturesSpec:
        # the precision shapes the path: fp16 GPU features never share one with fp32 ones
        return FeaturesSpec(task="ExtractFeatures", window=int(self.window), stride=int(self.stride), fps=None,
                            width=I3D_WIDTH, weights=I3D_WEIGHTS, precision=self.precision)

    def run(self):
        from tal_pipeline.models.i3d_weights import ensure_i3d_weights, weights_sha256
        from tal_pipeline.stages.data.features import extract_video_features
        from tal_pipeline.stages.parallel import threads_per_worker

        spec = self.spec()
        weights = ensure_i3d_weights(progress=log.info)
        frames = self.input()["frames"].store
        videos = sorted(frames.completion()["videos"])
        scheduler, workers = self.dask_scheduler()
        self.run_videos(extract_video_features, videos, self.skip_bad_videos, frames_store=str(frames.path),
                        window=spec.window, stride=spec.stride, weights=str(weights),
                        weights_sha256=weights_sha256(weights), device=self.device, batch_size=self.batch_size,
                        num_threads=threads_per_worker(scheduler, workers), precision=spec.precision)

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

    def spec(self) -> FeaturesSpec:
        """The grid as given, or the dataset preset's (fps 0: each video's); the width as given, or that of the
        source's first readable video."""
        from pipeline.config import dataset_preset

        preset = dataset_preset().features
        return FeaturesSpec(task="ImportFeatures", window=int(preset.window if self.window is None else self.window),
                            stride=int(preset.stride if self.stride is None else self.stride),
                            fps=float((preset.fps or 0.0) if self.fps is None else self.fps),
                            width=int(self.width or source_width(self.data)), weights=None, precision="fp32")

    def requires(self):
        return None

    def run(self):
        from tal_pipeline.stages.data.import_features import import_video_features, infer_width

        spec = self.spec()
        ann = dataset_annotations(self.data)
        videos = ann.videos["video"].tolist()
        window, stride, grid_fps = spec.window, spec.stride, spec.fps
        width = spec.width or infer_width(self.data.features, videos)  # 0: unreadable, this raises naming why
        fps = dict(zip(ann.videos["video"], ann.videos["fps"]))
        if not grid_fps and any(f != f for f in fps.values()):
            missing = [v for v, f in fps.items() if f != f][:5]
            raise ValueError(f"ImportFeatures: no fps in the annotations for {missing}: set --ImportFeatures-fps")
        self.run_videos(import_video_features, videos, self.skip_bad_videos, source=self.data.features,
                        fps_by_video={v: (grid_fps or fps[v]) for v in videos}, window=window, stride=stride,
                        width=width, durations=dict(zip(ann.videos["video"], ann.videos["duration"])),
                        video_fps=fps)


_SOURCE_WIDTHS: dict[str, int] = {}  # per process: (source, its files' fingerprint) -> width


def source_width(spec: dataset.DatasetSpec) -> int:
    """Channels of the imported features: those of the source's first readable video (read once per process while
    the source's files are unchanged); 0 when none can be read (ImportFeatures.run then says why)."""
    from tal_pipeline.stages.data.import_features import infer_width

    key = param_hash(dataset.identity(spec))
    if key not in _SOURCE_WIDTHS:
        try:
            _SOURCE_WIDTHS[key] = infer_width(spec.features, dataset_annotations(spec).videos["video"].tolist())
        except (OSError, ValueError):
            _SOURCE_WIDTHS[key] = 0
    return _SOURCE_WIDTHS[key]


def gt_segments(ann) -> dict:
    """{video: (G, 2) [start, end] seconds} of the non-ambiguous instances, every video of `ann` included."""
    import numpy as np

    actions = ann.actions
    return {v: actions.loc[actions["video"] == v, ["start", "end"]].to_numpy(dtype=np.float64)
            for v in ann.videos["video"]}
