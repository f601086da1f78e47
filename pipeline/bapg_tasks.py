"""BAPG tasks (BAPG section II): TrainEncoder -> SimilarityMatrices -> TSCProposals -> ProposalFeatures.

Each task is a few lines around a pure function in stages/. Per-video stages run over every video of both
subsets (a +BAPG detector trains on the training videos' ProposalFeatures); the encoder trains on the
training subset only, and proposal recall is reported on the test subset.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import luigi

from pipeline import dataset
from pipeline.base import StageTask, gpu_resources, write_csv
from pipeline.data_tasks import DatasetStage, SampleFrames, dataset_annotations, features_task, gt_segments
from pipeline.specs import (
    BapgFeaturesSpec,
    EncoderSpec,
    ProposalsSpec,
    SimilaritySpec,
    bapg_features_spec,
    encoder_config,
    scales_of,
)
from tal_pipeline.stages.bapg.encoder_separation import encoder_report
from tal_pipeline.stages.bapg.proposal_features import DEFAULT_GROUPS, needs_similarity
from tal_pipeline.stages.bapg.proposals import BOUNDARY_SOURCES, SIMILARITY_SOURCES
from tal_pipeline.storage.training_board import TrainingBoard
from tal_pipeline.storage.zarr_store import ArtifactStore

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("pipeline")

# Training videos' matrices from an encoder that has fitted them are cleaner than the test videos' (TSC recall
# AR@100 0.83 train vs 0.67 test on the synthetic data), and a +BAPG detector learns to trust them too much.
CROSS_FIT_FOLDS = 2


def frames_for_encoder():
    """SampleFrames, for the frame encoder; refused for a dataset of precomputed features without videos."""
    if not dataset.current().videos:
        raise ValueError('TrainEncoder: --TrainEncoder-options \'{"encoder": "cnn"}\' trains Phi on the sampled frames '
                         "of the videos, but this dataset has only precomputed features (--dataset-features) and no "
                         "videos (--dataset-videos); use the feature encoder (the default, encoder mlp) or give the "
                         "videos as well")
    return SampleFrames()


def cross_fitting_folds(train_videos: list[str], folds: int) -> dict[str, int]:
    """Cross-fitting fold of each training video: its rank in sorted order modulo folds (one sort, not one per
    video: at 10,000 training videos a per-video rank was a quadratic scan)."""
    return {video: rank % folds for rank, video in enumerate(sorted(train_videos))}


class TrainEncoder(StageTask):
    """The contrastive encoder Phi trained with hard negatives on the training subset (BAPG II-B).

    With folds = K > 0 and fold = i, it trains without the training videos of fold i: SimilarityMatrices embeds
    those videos with it, so no training video's matrix comes from an encoder that has fitted that video.
    """

    artifact = "encoder"
    suffix = ""

    @property
    def resources(self):  # GPU stages share a GPU only as [resources] gpu allows (pipeline.base.gpu_resources)
        return gpu_resources(self.device)

    seed = luigi.IntParameter(default=0)
    loss = luigi.ChoiceParameter(default="triplet", choices=["triplet", "bapg"],
                                 description="triplet: [s(a,n) - s(a,p) + margin]_+ (default; docs/method.md §2); "
                                             "bapg: the paper's eq. 3, [s(a,n) - gamma]_+ - s(a,p)")
    margin = luigi.FloatParameter(default=0.0, description="triplet margin; 0: the stage default")
    gamma = luigi.FloatParameter(default=1.0, description="gamma of eq. 3 (only with --TrainEncoder-loss bapg)")
    epochs = luigi.IntParameter(default=0, description="0: the stage default")
    folds = luigi.IntParameter(default=0, description="cross-fitting folds (0: train on every training video)")
    fold = luigi.IntParameter(default=-1, description="with folds > 0: the fold of training videos left out")
    device = luigi.Parameter(default="auto", significant=False, description="auto | cpu | cuda | cuda:N")
    deterministic = luigi.BoolParameter(default=False, significant=False, description="repeatable seeded CUDA runs "
                                        "(slower; stages.runtime.deterministic_mode)")
    options = luigi.DictParameter(default={}, description="JSON over the encoder config (stages.bapg.encoder."
                                  "DEFAULT_ENCODER) but its flags (loss, margin, gamma, epochs), e.g. "
                                  "'{\"context\": 5}' (benchmarks/bench_encoder_boundaries.py); unknown keys and "
                                  "flags are refused")

    def spec(self) -> EncoderSpec:
        return EncoderSpec(seed=int(self.seed), folds=int(self.folds), fold=int(self.fold),
                           config=encoder_config(self.loss, self.margin, self.gamma, self.epochs, self.options))

    @property
    def on_frames(self) -> bool:
        """Whether Phi is the frame encoder (options {"encoder": "cnn"}): trained on the sampled frames."""
        return self.options.get("encoder", "mlp") == "cnn"

    def requires(self):
        if not self.on_frames:  # the default: the features alone
            return {"features": features_task()}
        return {"features": features_task(), "frames": frames_for_encoder()}

    def run(self):
        import torch

        from tal_pipeline.stages.bapg.encoder import train_encoder
        from tal_pipeline.storage.features import load_feature_dict

        ann = dataset_annotations(self.data)
        train, test = ann.subset(self.data.train_subset), ann.subset(self.data.test_subset)
        videos = train.videos["video"].tolist()
        if self.folds:
            if not 0 <= self.fold < self.folds:
                raise ValueError(f"TrainEncoder: fold must be in [0, {self.folds}), got {self.fold}")
            fold_by_video = cross_fitting_folds(videos, self.folds)
            videos = [v for v in videos if fold_by_video[v] != self.fold]
        spec = self.spec()
        features_path = self.input()["features"].path
        if self.on_frames:  # the frame at each feature step's centre time, so Phi's steps are the feature steps
            from tal_pipeline.stages.data.frame_steps import load_step_frames, read_step_frames

            frames_path = self.input()["frames"].path
            features, grids = load_step_frames(frames_path, features_path, videos)
        else:
            features, grids = load_feature_dict(features_path, videos)
        actions = train.actions[train.actions["video"].isin(set(features))]
        board = TrainingBoard(self.output().path)  # live TensorBoard events in the run's folder
        state, cfg, log_rows = train_encoder(features, actions, grids, spec.config, seed=spec.seed,
                                             device=self.device, deterministic=self.deterministic, on_log=board.rows,
                                             on_epoch=lambda done, total: self.report_progress(done, total, "epochs"))
        cfg = {**cfg, "train_videos": sorted(features), "folds": spec.folds, "fold": spec.fold}
        del features  # the held-out videos' frames are read one video at a time
        # Evidence it learns: s(anchor, positive) - s(anchor, hard negative) on held-out videos.
        held_out, held_grids = load_feature_dict(features_path, test.videos["video"].tolist())
        inputs = ((lambda v: read_step_frames(frames_path, v, held_grids[v], len(held_out[v])))
                  if self.on_frames else None)
        report = encoder_report(state, cfg, held_out, test.actions, held_grids, spec.config, spec.seed, self.device,
                                inputs)
        with self.writer() as folder:
            torch.save({"state": state, "config": cfg}, folder / "checkpoint.pt")
            (folder / "config.json").write_text(json.dumps(cfg, indent=1, default=str))
            (folder / "separation.json").write_text(json.dumps(report, indent=1))
            write_csv(folder / "loss_log.csv", log_rows)
            board.figures("separation", report, cfg["iterations"])  # held-out s(a,p) - s(a,hard neg)
            board.move_into(folder)
        log.info("encoder: held-out s(a,p) - s(a,hard neg): %.3f before training, %.3f after",
                 report["before"]["gap"], report["after"]["gap"])


class SimilarityMatrices(DatasetStage):
    """S per video, (T', T') float16, tile-chunked (BAPG eq. 2 on the encoder embeddings)."""

    artifact = "similarity"
    use_encoder = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                      description="False: cosine similarity of the features themselves (ablation)")
    cross_fit = luigi.IntParameter(default=CROSS_FIT_FOLDS, description="embed each training video with an "
                                   "encoder trained without it (K folds; 0: one encoder for every video)")
    block = luigi.IntParameter(default=1024, significant=False, description="tile size (rows = cols = Zarr chunk)")
    device = luigi.Parameter(default="cpu", significant=False, description="device for the encoder embeddings")
    resources = property(lambda self: gpu_resources(self.device))  # cuda (or auto) holds the GPU (pipeline.base)

    def spec(self) -> SimilaritySpec:
        return SimilaritySpec(use_encoder=bool(self.use_encoder), cross_fit=int(self.cross_fit) if self.use_encoder
                              else 0, block=int(self.block))

    def requires(self):
        req = {"features": features_task()}
        if self.use_encoder:
            req["encoder"] = TrainEncoder()
            if self.cross_fit:
                req["fold_encoders"] = [TrainEncoder(folds=self.cross_fit, fold=i) for i in range(self.cross_fit)]
            if req["encoder"].on_frames:  # the frame encoder embeds the sampled frames
                req["frames"] = frames_for_encoder()
        return req

    def encoder_by_video(self, videos: list[str]) -> dict[str, str]:
        """Which encoder embeds each video: its fold's for a training video (cross-fitting), else the full one."""
        train = dataset_annotations(self.data).subset(self.data.train_subset).videos["video"].tolist()
        full = self.input()["encoder"].path
        if not self.cross_fit:
            return {v: full for v in videos}
        folds = self.input()["fold_encoders"]
        fold_by_video = cross_fitting_folds(train, self.cross_fit)
        return {v: (folds[fold_by_video[v]].path if v in fold_by_video else full) for v in videos}

    def run(self):
        from tal_pipeline.stages.bapg.similarity import similarity_matrix_to_store
        from tal_pipeline.stages.parallel import threads_per_worker

        features = self.input()["features"].store
        videos = features.videos()
        scheduler, workers = self.dask_scheduler()
        self.run_videos(similarity_matrix_to_store, videos, self.skip_bad_videos,
                        features_store=str(features.path),
                        encoder=self.encoder_by_video(videos) if self.use_encoder else None, block=self.spec().block,
                        device=self.device, num_threads=threads_per_worker(scheduler, workers),
                        **({"frames_store": self.input()["frames"].path} if "frames" in self.input() else {}))


class TSCProposals(DatasetStage):
    """Temporal Similarity Clustering change points at every scale, and the proposals, cached per video.

    Scales: fixed counts `ms`, then `rates` (change points per minute of video: longer videos get more), then
    the KTS penalised choice when `penalty` > 0; one DP pass per video gives them all. `source` selects where
    the boundaries come from: tsc (the method), raw (TSC on the raw features' similarity, no encoder), random
    (as many random change points as tsc finds per scale) or oracle (ground-truth action boundaries).
    Before the store is flagged complete its folder gets recall.csv / recall.json: proposal recall per scale on
    the test subset and on the training subset (AR@AN at tIoU 0.5:0.05:0.95, recall at tIoU 0.5 and 0.7), and
    boundary_accuracy.csv / boundary_accuracy.json: precision, recall and F1 of each scale's change points
    against the ground-truth action boundaries within +-1 and +-2 feature steps, on the same two subsets.
    """

    artifact = "proposals"
    ms = luigi.ListParameter(default=[], description="fixed numbers of change points m, one scale each")
    # None: the dataset preset's (stages.presets: thumos14 8 / 16 / 32, anet 0.5 / 1 / 2), chosen on training videos.
    rates = luigi.OptionalListParameter(default=None, description="change points per minute of video, one scale "
                                                                   "each (default: the dataset preset's)")
    penalty = luigi.FloatParameter(default=0.0, description="> 0: one more scale, the KTS penalised number of "
                                                            "change points with this penalty weight")
    min_size = luigi.IntParameter(default=1, description="minimum segment length in feature steps")
    max_union = luigi.IntParameter(default=3, description="proposals also join up to this many consecutive segments")
    source = luigi.ChoiceParameter(default="tsc", choices=BOUNDARY_SOURCES,
                                   description="tsc | raw (no encoder) | random (same counts) | oracle (ground truth)")

    def spec(self) -> ProposalsSpec:
        """The scales as the stage functions take them (rates: as given, or the dataset preset's), converted once."""
        from pipeline.config import dataset_preset

        rates = dataset_preset().tsc_rates if self.rates is None else self.rates
        return ProposalsSpec(source=self.source, scales=scales_of(self.ms, rates, self.penalty, self.min_size),
                             max_union=int(self.max_union))

    def similarity_task(self) -> SimilarityMatrices | None:
        """The SimilarityMatrices whose S gave these boundaries (random: its tsc store's); None for the oracle."""
        req = self.requires()
        if "tsc" in req:
            return req["tsc"].similarity_task()
        return req.get("similarity")

    def requires(self):
        if self.source in SIMILARITY_SOURCES:
            return {"similarity": SimilarityMatrices(use_encoder=self.source == "tsc")}
        if self.source == "random":  # as many change points as tsc finds at each of these scales
            return {"tsc": TSCProposals(ms=self.ms, rates=self.rates, penalty=self.penalty, min_size=self.min_size,
                                        max_union=self.max_union, source="tsc")}
        return {"features": features_task()}

    def run(self):
        from tal_pipeline.stages.bapg.proposals import tsc_proposals_to_store

        spec = self.spec()
        inputs = {k: t.path for k, t in self.input().items()}
        ann = dataset_annotations(self.data)
        durations = dict(zip(ann.videos["video"], ann.videos["duration"].astype(float)))
        videos = ArtifactStore(next(iter(inputs.values()))).videos()
        # The DP kernel is single-threaded Numba with nogil=True: Dask threads run videos side by side.
        self.run_videos(tsc_proposals_to_store, videos, self.skip_bad_videos,
                        before_complete=self.write_recall, source=spec.source,
                        similarity_store=inputs.get("similarity"), tsc_store=inputs.get("tsc"),
                        features_store=inputs.get("features"), max_union=spec.max_union, durations=durations,
                        gt_seconds=gt_segments(ann) if spec.source == "oracle" else None, scales=spec.scales)

    def write_recall(self, store, done_videos: list[str]) -> None:
        """recall.csv / recall.json (when a video has ground truth) and boundary_accuracy.csv / .json (always: empty
        without ground truth) into the store's folder."""
        import pandas as pd

        from tal_pipeline.stages.bapg.proposals import recall_table_from_store

        ann = dataset_annotations(self.data)
        tables = []
        for subset in (self.data.test_subset, self.data.train_subset):
            gt = {v: g for v, g in gt_segments(ann.subset(subset)).items() if v in set(done_videos) and len(g)}
            if gt:
                tables.append(recall_table_from_store(str(store.path), gt).assign(subset=subset))
        if tables:
            table = pd.concat(tables, ignore_index=True)
            table.to_csv(store.path / "recall.csv", index=False)
            (store.path / "recall.json").write_text(table.to_json(orient="records", indent=1))
            log.info("proposals (%s): recall per scale\n%s", self.source, table.to_string(index=False))
        else:
            log.warning("proposals: no video with ground truth; no recall table")
        accuracy = boundary_accuracy_by_subset(str(store.path), ann, (self.data.test_subset, self.data.train_subset),
                                               done_videos)
        accuracy.to_csv(store.path / BOUNDARY_ACCURACY_CSV, index=False)
        (store.path / BOUNDARY_ACCURACY_JSON).write_text(accuracy.to_json(orient="records", indent=1))
        test = accuracy[(accuracy["subset"] == self.data.test_subset) & (accuracy["tolerance"] == 2)]
        log.info("proposals (%s): boundary F1 at +-2 steps (%s subset): %s", self.source, self.data.test_subset,
                 ", ".join(f"{r.scale} {r.f1:.3f}" for r in test.itertuples()) or "no video with ground truth")


BOUNDARY_ACCURACY_CSV, BOUNDARY_ACCURACY_JSON = "boundary_accuracy.csv", "boundary_accuracy.json"
BOUNDARY_TOLERANCES = (1, 2)  # feature steps


def boundary_accuracy_by_subset(store_path: str, ann, subsets, videos) -> pd.DataFrame:
    """Boundary precision / recall / F1 of every scale of a TSCProposals store within +-1 and +-2 steps, micro-averaged
    over each subset's videos that have ground truth (and are among `videos`, those the store holds): one row per
    (subset, scale, tolerance), columns subset, scale, tolerance, tp, n_pred, n_true, precision, recall, f1.

    The store's change points are what the stage computed: for a training video with cross-fitting on, TSC on
    the similarity matrix of the encoder that left that video out (SimilarityMatrices)."""
    import pandas as pd

    from tal_pipeline.stages.bapg.boundary_accuracy import boundary_accuracy_from_store

    have, tables = set(videos), []
    for subset in dict.fromkeys(subsets):
        gt = {v: g for v, g in gt_segments(ann.subset(subset)).items() if v in have and len(g)}
        if gt:
            table = boundary_accuracy_from_store(store_path, gt, BOUNDARY_TOLERANCES)
            tables.append(table.drop(columns="video").assign(subset=subset))
    columns = ["subset", "scale", "tolerance", "tp", "n_pred", "n_true", "precision", "recall", "f1"]
    return pd.concat(tables, ignore_index=True)[columns] if tables else pd.DataFrame(columns=columns)


class GroupsParameter(luigi.ListParameter):
    """The channel groups of B (stages.bapg.proposal_features.GROUPS), as JSON: checked and put in the fixed
    channel order when parsed, so an unknown name fails at once and ["boundary", "pooled"] is the default."""

    def normalize(self, x):
        from tal_pipeline.stages.bapg.proposal_features import normalise_groups

        return normalise_groups(super().normalize(x), "channel groups")


class GroupListsParameter(luigi.ListParameter):
    """A JSON list of channel-group lists (the Report's group ablations), each checked as GroupsParameter does."""

    def normalize(self, x):
        from tal_pipeline.stages.bapg.proposal_features import normalise_groups

        return tuple(normalise_groups(g, "channel groups") for g in super().normalize(x))


class ProposalFeatures(DatasetStage):
    """Boundary-aware per-step features from the TSC segmentations (BAPG II-D), same layout as features.

    `groups` selects B's channel groups (stages/bapg/proposal_features.py): pooled, boundary (the default, B as
    BAPG II-D is implemented here), novelty, strength. novelty and strength read the similarity matrix, so with
    them this task also requires SimilarityMatrices: the raw features' for the raw source, else the encoder's
    (the one TSC ran on; for the random and oracle sources, the matrix TSC would have used).
    """

    artifact = "bapg_features"
    # 128: the +BAPG input grows by (scales) x (128 pooled + 4 boundary channels), 3 x 132 = 396 by default,
    # instead of 3 x (1024 + 4) unprojected, which keeps the detectors' first layer (and the default run) about
    # as cheap as the baseline's; 0 pools the full Fv as BAPG II-D describes.
    projection_dim = luigi.IntParameter(default=128, description="fixed random orthogonal projection of Fv before "
                                                                 "pooling (0: none, pool the full features)")

    source = luigi.ChoiceParameter(default="tsc", choices=BOUNDARY_SOURCES,
                                   description="where the boundaries come from (TSCProposals --source)")
    groups = GroupsParameter(default=list(DEFAULT_GROUPS),
                             description="channel groups of B, any of pooled, boundary, novelty, strength (always "
                                         "in that order)")

    def requires(self):
        req = {"features": features_task(), "proposals": TSCProposals(source=self.source)}
        if needs_similarity(self.groups):
            req["similarity"] = SimilarityMatrices(use_encoder=self.source != "raw")
        return req

    def similarity_task(self) -> SimilarityMatrices | None:
        """The S behind B: the one its novelty / strength groups read, else the one its boundaries came from."""
        req = self.requires()
        return req.get("similarity") or req["proposals"].similarity_task()

    def spec(self) -> BapgFeaturesSpec:
        """B's channels from the upstream specs: the proposals' scales and the features' width."""
        req = self.requires()
        return bapg_features_spec(self.source, self.groups, self.projection_dim, req["proposals"].spec().scales,
                                  req["features"].spec().width)

    def run(self):
        from tal_pipeline.stages.bapg.proposal_features import proposal_features_to_store

        spec = self.spec()
        proposals = self.input()["proposals"].store
        similarity = self.input().get("similarity")
        self.run_videos(proposal_features_to_store, proposals.videos(), self.skip_bad_videos,
                        features_store=self.input()["features"].path, proposals_store=str(proposals.path),
                        projection_dim=spec.projection_dim, groups=list(spec.groups),
                        similarity_store=similarity.path if similarity is not None else None)
