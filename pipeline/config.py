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
