"""Video-level classes for class-agnostic detectors (the anet preset): ClassifyVideos (a classifier trained on the
training split's pooled features, or imported external scores) and FuseVideoClasses (each class-agnostic
detection once per top-2 class of its video, score sqrt(class score x detection score)). Evaluate requires
FuseVideoClasses instead of Detect only for a class-agnostic detector; the THUMOS14 path never runs them.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import luigi

from pipeline.base import StageTask, task_threads
from pipeline.data_tasks import dataset_annotations, features_task
from pipeline.detector_tasks import Detect, DetectorTask
from pipeline.hashing import plain
from pipeline.specs import ClassifySpec, FuseSpec

log = logging.getLogger("pipeline")

SCORES_JSON = "video_classes.json"
METRICS_JSON = "metrics.json"


def _video_labels(ann, videos) -> dict[str, list[str]]:
    """{video: its sorted class names} for every video of `videos` (no action: [])."""
    by_video = ann.actions.groupby("video")["label"].agg(lambda x: sorted(set(x))).to_dict()
    return {v: list(by_video.get(v, [])) for v in videos}


class ClassifyVideos(StageTask):
    """Video-level class scores of the test videos in the CUHK layout (video_classes.json: {"results": {video:
    [scores]}, "class": [names]}), with metrics.json (source, test top-1 accuracy). Trains the video classifier
    (stages.classification.video_classifier) on the training split, or imports --ClassifyVideos-scores-file."""

    artifact = "video_classes"
    suffix = ""
    scores_file = luigi.Parameter(default="", description="external video-level scores (JSON {\"results\": {video: "
                                                          "[scores]}, \"class\": [names]}); empty: train the "
                                                          "classifier")
    settings = luigi.DictParameter(default={}, description="classifier settings, JSON over stages.classification."
                                                           "video_classifier.DEFAULT_CLASSIFIER (hidden, epochs, lr, "
                                                           "weight_decay, dropout)")
    seed = luigi.IntParameter(default=0)

    def requires(self):
        return {} if self.scores_file else {"features": features_task()}

    def spec(self) -> ClassifySpec:
        """External scores: their file (a changed file gets a new path, as the dataset's own files do); else the
        classifier's resolved settings and seed."""
        from tal_pipeline.stages.classification.video_classifier import resolve_classifier_config

        if not self.scores_file:
            return ClassifySpec(scores_file=None, settings=resolve_classifier_config(plain(self.settings)),
                                seed=int(self.seed))
        if not Path(self.scores_file).is_file():
            raise ValueError(f"--ClassifyVideos-scores-file {self.scores_file}: no such file")
        st = Path(self.scores_file).stat()
        return ClassifySpec(scores_file={"path": str(Path(self.scores_file).resolve()), "size": st.st_size,
                                         "mtime_ns": st.st_mtime_ns}, settings=None, seed=None)

    def run(self):
        from tal_pipeline.stages.classification.video_classifier import top1_accuracy
        from tal_pipeline.stages.classification.video_scores import read_video_scores, scores_payload

        ann = dataset_annotations(self.data)
        test = ann.subset(self.data.test_subset)
        test_videos = test.videos["video"].tolist()
        labels = _video_labels(test, test_videos)
        extra = {}
        if self.scores_file:
            scores, classes = read_video_scores(self.scores_file, test_videos)
            unknown = sorted(set(ann.labels) - set(classes))
            if len(unknown) == len(ann.labels):
                raise ValueError(f"{self.scores_file}: none of its classes is a class of the dataset "
                                 f"(e.g. {classes[:3]} vs {ann.labels[:3]})")
            if unknown:
                log.warning("ClassifyVideos: %s scores no class %s of the dataset: their actions cannot be detected",
                            self.scores_file, unknown[:10])
            metrics = {"source": "external", "file": str(Path(self.scores_file).resolve())}
        else:
            state, config, scores, classes = self._train(ann, test_videos)
            metrics = {"source": "classifier", "train_top1": config["train_top1"],
                       "settings": {k: config[k] for k in ("hidden", "epochs", "lr", "weight_decay", "dropout")},
                       "train_videos": config["train_videos"], "seed": self.seed}
            extra = {"state": state, "config": config}
        metrics.update(classes=len(classes), test_videos=len(test_videos),
                       test_top1=top1_accuracy(scores, labels, classes))
        log.info("video classes (%s): top-1 accuracy on the %d test videos %s", metrics["source"], len(test_videos),
                 "n/a" if metrics["test_top1"] is None else f"{metrics['test_top1']:.3f}")
        with self.writer() as folder:
            (folder / SCORES_JSON).write_text(json.dumps(scores_payload(scores, classes)))
            (folder / METRICS_JSON).write_text(json.dumps(metrics, indent=1))
            if extra:
                import torch

                torch.save(extra, folder / "classifier.pt")

    def _train(self, ann, test_videos):
        import torch

        from tal_pipeline.stages.classification.video_classifier import (
            pooled_features,
            train_video_classifier,
            video_class_scores,
        )
        from tal_pipeline.storage.features import read_features

        torch.set_num_threads(task_threads())
        train = ann.subset(self.data.train_subset)
        train_videos = train.videos["video"].tolist()
        store = self.input()["features"].path
        pooled = {v: pooled_features(read_features(store, v)[0], v) for v in dict.fromkeys(train_videos + test_videos)}
        state, config = train_video_classifier({v: pooled[v] for v in train_videos},
                                               _video_labels(train, train_videos), self.spec().settings, self.seed)
        scores = video_class_scores(state, config, pooled, test_videos)
        return state, config, scores, config["classes"]


class FuseVideoClasses(DetectorTask):
    """A class-agnostic detector's test detections with classes: each detection once per top-`topk` class of its
    video's ClassifyVideos scores, score sqrt(class score x detection score) (ActionFormer's ActivityNet fusion).
    detections.json in the ActivityNet results format, as Detect writes it."""

    artifact = "fused_detections"
    suffix = ""
    topk = luigi.IntParameter(default=2, description="classes per video each detection is given")
    max_dets = luigi.OptionalIntParameter(default=None, description="passed on to Detect")

    def requires(self):
        return {"detections": Detect(**self.variant(), max_dets=self.max_dets), "classes": ClassifyVideos()}

    def spec(self) -> FuseSpec:
        return FuseSpec(topk=int(self.topk))

    def run(self):
        from tal_pipeline.stages.classification.video_scores import fuse_video_classes, read_video_scores
        from tal_pipeline.stages.detectors.training import FOREGROUND

        payload = json.loads((Path(self.input()["detections"].path) / "detections.json").read_text())
        results = payload["results"]
        other = sorted({d["label"] for dets in results.values() for d in dets} - {FOREGROUND})
        if other:
            raise ValueError(f"FuseVideoClasses: the detections of {self.input()['detections'].path} carry classes "
                             f"{other[:5]}: the detector is not class-agnostic")
        source = Path(self.input()["classes"].path) / SCORES_JSON
        scores, classes = read_video_scores(source, sorted(results))
        fused = fuse_video_classes(results, scores, classes, topk=self.spec().topk, source=str(source))
        payload = {**payload, "results": fused,
                   "video_classes": {"artifact": Path(self.input()["classes"].path).name, "topk": self.topk,
                                     **json.loads((Path(self.input()["classes"].path) / METRICS_JSON).read_text())}}
        with self.writer() as folder:
            (folder / "detections.json").write_text(json.dumps(payload))
