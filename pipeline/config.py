"""Configuration sections of luigi.cfg, each overridable on the command line.

`[dataset] videos=DIR` is `--dataset-videos DIR` for any task, and so on. Values read from a
luigi.Config are not part of a task's identity, so the dataset's identity (paths, file sizes and
mtimes) is hashed into every artifact path explicitly (see pipeline.dataset).
"""
import luigi


class dataset(luigi.Config):  # noqa: N801 - section name as written in luigi.cfg
    videos = luigi.Parameter(default="", description="folder of <video_id>.<ext> files; empty: synthetic dataset")
    annotations = luigi.Parameter(default="", description="annotation file (ActivityNet/ActionFormer JSON or G-TAD CSV)")
    train_subset = luigi.Parameter(default="train", description="subset used for training (case-insensitive)")
    test_subset = luigi.Parameter(default="test", description="subset used for evaluation (case-insensitive)")
    features = luigi.Parameter(default="", description="precomputed features (.npy folder or HDF5); skips frames+I3D")


class paths(luigi.Config):  # noqa: N801
    workdir = luigi.Parameter(default="runs", description="where every artifact is written")


class synthetic(luigi.Config):  # noqa: N801
    videos = luigi.IntParameter(default=16)
    seed = luigi.IntParameter(default=0)
    duration = luigi.FloatParameter(default=40.0, description="mean video duration in seconds")
    size = luigi.IntParameter(default=128, description="frame size of the written mp4 files")


class dask(luigi.Config):  # noqa: N801
    scheduler = luigi.Parameter(default="threads", description="threads | processes | synchronous | tcp://host:port")
    workers = luigi.IntParameter(default=0, description="videos processed at once (0: one per core)")


class _DetectorSettings(luigi.Config):
    """One detector's settings: JSON objects over its defaults, part of every TrainDetector artifact hash."""

    model = luigi.DictParameter(default={}, description="constructor options of the detector (models/<detector>)")
    train = luigi.DictParameter(default={}, description="training settings (stages.detection.DEFAULT_TRAIN keys)")
    fusion = luigi.DictParameter(default={}, description="BAPG fusion options (models.fusion.BAPGFusion)")


class afsd(_DetectorSettings):  # noqa: N801 - [afsd] model = {...}, or --afsd-model '{...}'
    pass


class actionformer(_DetectorSettings):  # noqa: N801 - [actionformer] train = {"epochs": 40}, --actionformer-train
    pass


def detector_settings(name: str) -> dict:
    """{"model": {...}, "train": {...}, "fusion": {...}} of detector `name` from luigi.cfg / the command line."""
    section = {"afsd": afsd, "actionformer": actionformer}[name]()
    return {"model": _plain(section.model), "train": _plain(section.train), "fusion": _plain(section.fusion)}


def _plain(value):
    """luigi's frozen JSON containers -> plain dicts and lists (for hashing and torch.save)."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
