"""The published recipes: each detector's reference configuration for THUMOS14 I3D (preset thumos14) and
ActivityNet (preset anet), as this project's options, every value with the reference file (and key) it comes from.

Plain data, no torch. stages.detectors.recipes resolves them; tests/test_recipes.py holds every value against its
own table of the reference configs; docs/method.md ("Published recipes: departures") lists what cannot carry over.
Conventions: `epochs` here counts the warm-up epochs (the references' `epochs` exclude them: 30 + 5 warm-up is 35);
`model` holds constructor options of models/<detector>; `post` the Detect settings (max_dets, nms_sigma,
voting_thresh; nms_sigma None = the detector's own).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The reference repositories, at the commits read (fetch github:<repo>; git show HEAD:<file>).
AF = "happyharrycn/actionformer_release@61ea7eb"
TD = "dingfengshi/TriDet@764b816"
TT = "xlliu7/TadTR@983ae14"
AS = "TencentYoutuResearch/ActionDetection-AFSD@ed86a0d"


@dataclass(frozen=True)
class Ref:
    """One recipe value and where it comes from: "<repo@commit> <file>: <key> (how it maps, when not 1:1)"."""

    value: Any
    source: str


def _refs(repo: str, file: str, values: dict[str, tuple]) -> dict[str, Ref]:
    """{option: (value, key in `file`)} -> {option: Ref}."""
    return {k: Ref(v, f"{repo} {file}: {key}") for k, (v, key) in values.items()}


# ---------------------------------------------------------------- ActionFormer and TriDet
# TriDet is built on ActionFormer's code base: the values both set alike, under the same key of the same file, are
# written once here ({option: (value, key)}) and credited to each repository's own file by _refs.
_AFTD_CONFIG = {  # libs/core/config.py
    "embed_convs": (2, "model.backbone_arch[0]"),
    "drop_path": (0.1, "train_cfg.droppath"),
    "head_convs": (2, "model.head_num_layers 3 (including the final one)"),
    "reg_weight": (1.0, "train_cfg.loss_weight"),
    "label_smoothing": (0.0, "train_cfg.label_smoothing"),
    "abs_pe": (False, "model.use_abs_pe"),
    "nms_sigma": (0.5, "test_cfg.nms_sigma"),
    "min_duration": (0.05, "test_cfg.duration_thresh"),
}
_AFTD_HEADS = {  # every dataset config of both
    "cls_prior": (0.01, "train_cfg.cls_prior_prob"),
    "center_radius": (1.5, "train_cfg.center_sample_radius"),
    "score_thresh": (0.001, "test_cfg.min_score"),
    "pre_nms_topk": (2000, "test_cfg.pre_nms_topk"),
}
_AFTD_CROP = {  # every dataset config of both
    "crop_ratio": ([0.9, 1.0], "dataset.crop_ratio"),
    "trunc_thresh": (0.5, "dataset.trunc_thresh"),
}
_AFTD_THUMOS_TRAIN = {  # configs/thumos_i3d.yaml
    **_AFTD_CROP,
    "batch_size": (2, "loader.batch_size"),
    "lr": (1e-4, "opt.learning_rate"),
    "max_seq_len": (2304, "dataset.max_seq_len"),
    "grad_clip": (1.0, "train_cfg.clip_grad_l2norm"),
    "input_length": (None, "dataset (no force_upsampling: native grid)"),
    "class_agnostic": (False, "test_cfg.multiclass_nms True, num_classes 20"),
    "inference_len": (13824, "model.max_buffer_len_factor 6.0 x dataset.max_seq_len 2304"),
}
_AFTD_THUMOS_POST = {  # configs/thumos_i3d.yaml
    "nms_sigma": (0.5, "test_cfg.nms_sigma (libs/core/config.py default)"),
    "voting_thresh": (0.0, "test_cfg.voting_thresh 0.7 is unused with multiclass_nms (libs/utils/nms.py batched_nms)"),
}
_AFTD_ANET = {  # the ActivityNet config of each
    "abs_pe": (True, "model.use_abs_pe"),
    "label_smoothing": (0.1, "train_cfg.label_smoothing"),
}
_AFTD_ANET_TRAIN = {  # the ActivityNet config of each
    **_AFTD_CROP,
    "batch_size": (16, "loader.batch_size"),
    "lr": (1e-3, "opt.learning_rate"),
    "class_agnostic": (True, "dataset.num_classes 1 + test_cfg.ext_score_file (video classes)"),
}


def _detect_post(model: dict[str, Ref], voting_thresh: Ref, max_dets: Ref | None = None) -> dict[str, Ref]:
    """Detect's settings where the config gives the model the same nms_sigma (and max_dets, unless given): the
    model's values, written once."""
    return {"max_dets": max_dets or model["max_dets"], "nms_sigma": model["nms_sigma"], "voting_thresh": voting_thresh}


def _aftd_code(repo: str) -> dict[str, Ref]:
    """The options both set in code rather than in a config: one value each, credited to `repo`'s file."""
    return _refs(repo, "libs/modeling/blocks.py", {
        "layer_scale_init": (1e-4, "AffineDropPath init_scale_value"),
    }) | _refs(repo, "libs/modeling/losses.py", {
        "focal_alpha": (0.25, "sigmoid_focal_loss alpha"),
        "focal_gamma": (2.0, "sigmoid_focal_loss gamma"),
    }) | _refs(repo, "libs/modeling/meta_archs.py", {
        "loss_norm_momentum": (0.9, "loss_normalizer_momentum"),
        "topk_per_level": (True, "inference_single_video: pre_nms_topk inside the loop over pyramid levels"),
    })


def _aftd_train_code(repo: str) -> dict[str, Ref]:
    """The training options both set in code: no decay exemption, EMA, crop tries, cosine schedule."""
    return _refs(repo, "libs/utils/train_utils.py", {
        "decay_exempt": (True, "make_optimizer: no decay on biases, LayerNorm/GroupNorm weights, Scale/AffineDropPath"),
        "ema_decay": (0.999, "ModelEma decay"),
    }) | _refs(repo, "libs/datasets/data_utils.py", {
        "crop_tries": (200, "truncate_feats max_num_trials"),
    }) | _refs(repo, "libs/core/config.py", {"lr_steps": (None, "opt.schedule_type cosine")})


_AF_THUMOS = "configs/thumos_i3d.yaml"
_AF_ANET = "configs/anet_i3d.yaml"
_AF_DEFAULT_MODEL = _refs(AF, "libs/core/config.py", {
    **_AFTD_CONFIG,
    "levels": (6, "model.backbone_arch (2, 2, 5): 5 down-sampling blocks + the stem level"),
    "heads": (4, "model.n_head"),
    "stem_blocks": (2, "model.backbone_arch[1]"),
    "dropout": (0.0, "train_cfg.dropout"),
    "regression_ranges": ([[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]], "model.regression_range"),
}) | _refs(AF, "libs/modeling/blocks.py", {"mlp_ratio": (4, "TransformerBlock n_hidden = 4 * n_embd")}) | _aftd_code(AF)
_AF_ANET_MODEL = {**_AF_DEFAULT_MODEL, **_refs(AF, _AF_ANET, {
    **_AFTD_HEADS, **_AFTD_ANET,
    "width": (256, "model.embd_dim = fpn_dim = head_dim 256"),
    "window": ([7, 7, 7, 7, 7, 13], "model.n_mha_win_size [7, 7, 7, 7, 7, -1]: -1 (global) on level 5, "
                                    "whose 6 steps (192 / 32) a window of 13 covers whole"),
    "reg_weight": (2.0, "train_cfg.loss_weight"),
    "drop_path": (0.1, "train_cfg.droppath"),
    "loss_norm_init": (200.0, "train_cfg.init_loss_norm"),
    "nms_sigma": (0.75, "test_cfg.nms_sigma"),
    "min_duration": (0.001, "test_cfg.duration_thresh"),
    "max_dets": (100, "test_cfg.max_seg_num")})}
_AF_DEFAULT_TRAIN = _aftd_train_code(AF) | _refs(AF, "libs/core/config.py", {
    "warmup_epochs": (5, "opt.warmup_epochs"),
    "lr_min": (0.0, "opt (LinearWarmupCosineAnnealingLR eta_min default, libs/utils/lr_schedulers.py)"),
})
ACTIONFORMER = {
    "thumos14": {
        "model": {**_AF_DEFAULT_MODEL, **_refs(AF, "libs/core/config.py", {
            "width": (512, "model.embd_dim = fpn_dim = head_dim 512")}), **_refs(AF, _AF_THUMOS, {
                **_AFTD_HEADS,
                "window": (19, "model.n_mha_win_size"),
                "loss_norm_init": (100.0, "train_cfg.init_loss_norm"),
                "max_dets": (200, "test_cfg.max_seg_num")})},
        "train": {**_AF_DEFAULT_TRAIN, **_refs(AF, _AF_THUMOS, {
            **_AFTD_THUMOS_TRAIN,
            "epochs": (35, "opt.epochs 30 + warm-up 5"),
            "weight_decay": (0.05, "opt.weight_decay")})},
        "post": _refs(AF, _AF_THUMOS, {**_AFTD_THUMOS_POST, "max_dets": (200, "test_cfg.max_seg_num")}),
    },
    "anet": {
        "model": _AF_ANET_MODEL,
        "train": {**_AF_DEFAULT_TRAIN, **_refs(AF, _AF_ANET, {
            **_AFTD_ANET_TRAIN,
            "epochs": (15, "opt.epochs 10 + warm-up 5"),
            "weight_decay": (0.05, "opt.weight_decay"),
            "input_length": (192, "dataset.max_seq_len 192 with force_upsampling"),
            "max_seq_len": (192, "dataset.max_seq_len"),
            "grad_clip": (1.0, "train_cfg.clip_grad_l2norm"),
            "inference_len": (192, "model.max_buffer_len_factor 1.0 x dataset.max_seq_len 192")})},
        "post": _detect_post(_AF_ANET_MODEL, Ref(0.9, f"{AF} {_AF_ANET}: test_cfg.voting_thresh")),
    },
}

_TD_THUMOS = "configs/thumos_i3d.yaml"
_TD_ANET = "configs/anet_tsp.yaml"
_TD_DEFAULT_MODEL = _refs(TD, "libs/core/config.py", {
    **_AFTD_CONFIG,
    "levels": (6, "model.backbone_arch [2, 2, 5]: 5 down-sampling layers + the stem level"),
    "stem_layers": (2, "model.backbone_arch[1]"),
}) | _refs(TD, "libs/modeling/blocks.py", {"groups": (16, "SGPBlock nn.GroupNorm(16, n_embd)")}) | _aftd_code(TD)
_TD_SHARED = {  # set alike in both configs
    **_AFTD_HEADS,
    "regression_ranges": ([[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]], "model.regression_range"),
}
_TD_ANET_MODEL = {**_TD_DEFAULT_MODEL, **_refs(TD, _TD_ANET, {
    **_TD_SHARED, **_AFTD_ANET,
    "width": (256, "model.embd_dim = fpn_dim 256 (head_dim 512: a departure)"),
    "window": (15, "model.n_sgp_win_size"),
    "k": (1.3, "model.k"),
    "mlp_ratio": (8.0, "model.sgp_mlp_dim 2048 / width 256"),
    "sgp_init_std": (0.2, "model.init_conv_vars (nn.init.normal_ std, libs/modeling/blocks.py)"),
    "num_bins": (12, "model.num_bins"),
    "iou_weight_power": (1.0, "model.iou_weight_power"),
    "input_noise": (0.5, "model.input_noise"),
    "loss_norm_init": (400.0, "train_cfg.init_loss_norm"),
    "nms_sigma": (0.7, "test_cfg.nms_sigma"),
    "min_duration": (0.1, "test_cfg.duration_thresh"),
    "max_dets": (200, "test_cfg.max_seg_num")})}
TRIDET = {
    "thumos14": {
        "model": {**_TD_DEFAULT_MODEL, **_refs(TD, "libs/core/config.py", {
            "width": (512, "model.embd_dim = fpn_dim = head_dim 512")}), **_refs(TD, _TD_THUMOS, {
                **_TD_SHARED,
                "window": (1, "model.n_sgp_win_size"),
                "k": (5.0, "model.k"),
                "mlp_ratio": (1.5, "model.sgp_mlp_dim 768 / width 512"),
                "num_bins": (16, "model.num_bins"),
                "iou_weight_power": (0.2, "model.iou_weight_power"),
                "input_noise": (0.0005, "model.input_noise"),
                "loss_norm_init": (100.0, "train_cfg.init_loss_norm"),
                "max_dets": (2000, "test_cfg.max_seg_num")})},
        "train": {**_aftd_train_code(TD), **_refs(TD, _TD_THUMOS, {
            **_AFTD_THUMOS_TRAIN,
            "epochs": (40, "opt.epochs 20 + warm-up 20"),
            "warmup_epochs": (20, "opt.warmup_epochs"),
            "weight_decay": (0.025, "opt.weight_decay")}),
            **_refs(TD, "libs/core/config.py", {"lr_min": (1e-8, "opt.eta_min")})},
        "post": _refs(TD, _TD_THUMOS, {**_AFTD_THUMOS_POST, "max_dets": (2000, "test_cfg.max_seg_num")}),
    },
    "anet": {
        "model": _TD_ANET_MODEL,
        "train": {**_aftd_train_code(TD), **_refs(TD, _TD_ANET, {
            **_AFTD_ANET_TRAIN,  # then by the config's sections: dataset, model, opt, train_cfg
            "input_length": (None, "dataset.max_seq_len 768 without force_upsampling: padded, not resized"),
            "max_seq_len": (768, "dataset.max_seq_len"),
            "inference_len": (768, "model.max_buffer_len_factor 1.0 x dataset.max_seq_len 768"),
            "epochs": (15, "opt.epochs 5 + warm-up 10"),
            "warmup_epochs": (10, "opt.warmup_epochs"),
            "lr_min": (5e-5, "opt.eta_min"),
            "weight_decay": (0.04, "opt.weight_decay"),
            "grad_clip": (0.4, "train_cfg.clip_grad_l2norm")})},
        "post": _detect_post(_TD_ANET_MODEL, Ref(0.95, f"{TD} {_TD_ANET}: test_cfg.voting_thresh")),
    },
}

# ---------------------------------------------------------------- TadTR (the reference ships THUMOS14 only)
_TT_MODEL = _refs(TT, "opts.py", {
    "width": (256, "cfg.hidden_dim"),
    "heads": (8, "cfg.nheads"),
    "enc_points": (4, "cfg.enc_n_points"),
    "dec_points": (4, "cfg.dec_n_points"),
    "dropout": (0.1, "cfg.dropout"),
    "cost_class": (6.0, "cfg.set_cost_class"),
    "cost_seg": (5.0, "cfg.set_cost_seg"),
    "cost_iou": (2.0, "cfg.set_cost_iou"),
    "cls_weight": (2.0, "cfg.cls_loss_coef"),
    "seg_weight": (5.0, "cfg.seg_loss_coef"),
    "iou_weight": (2.0, "cfg.iou_loss_coef"),
    "act_weight": (4.0, "cfg.act_loss_coef"),
    "aux_loss": (True, "cfg.aux_loss"),
    "focal_alpha": (0.25, "cfg.focal_alpha"),
    "max_dets": (100, "cfg.postproc_ins_topk"),
    "nms_sigma": (None, "no NMS on a window's set prediction (cfg.nms_thr applies to window merging only)"),
}) | _refs(TT, "configs/thumos14_i3d2s_tadtr.yml", {
    "enc_layers": (4, "enc_layers"),
    "dec_layers": (4, "dec_layers"),
    "queries": (40, "num_queries"),
    "mlp_ratio": (4, "dim_feedforward 1024 / hidden_dim 256"),
})
_TT_TRAIN = _refs(TT, "opts.py", {
    "epochs": (16, "cfg.epochs"),
    "warmup_epochs": (0, "no warm-up (main.py MultiStepLR)"),
    "lr_steps": ([14], "cfg.lr_step"),
    "lr_gamma": (0.1, "MultiStepLR gamma default (main.py)"),
    "batch_size": (16, "cfg.batch_size"),
    "lr": (2e-4, "cfg.lr"),
    "weight_decay": (1e-4, "cfg.weight_decay"),
    "decay_exempt": (False, "main.py: one weight decay for every parameter"),
    "grad_clip": (0.1, "cfg.clip_max_norm"),
    "ema_decay": (0.0, "main.py: no EMA"),
}) | _refs(TT, "configs/thumos14_i3d2s_tadtr.yml", {
    "max_seq_len": (128, "slice_len"),
    "slice_overlap": (0.75, "slice_overlap (every window of every video, each epoch)"),
    "crop_ratio": (None, "online_slice: fixed windows, no random crop"),
    "inference_len": (128, "slice_len (test_slice_overlap 0.25: a departure)"),
    "input_length": (None, "feature: native grid"),
    "class_agnostic": (False, "binary False"),
})
_TT_POST = _refs(TT, "opts.py", {
    "max_dets": (100, "cfg.postproc_ins_topk"),
    "nms_sigma": (None, "no Soft-NMS"),
    "voting_thresh": (0.0, "no voting"),
})
TADTR = {
    "thumos14": {"model": _TT_MODEL, "train": _TT_TRAIN, "post": _TT_POST},
    # No ActivityNet config in the reference repository: its THUMOS14 recipe on the preset's inputs (a departure).
    "anet": {"model": _TT_MODEL, "train": {**_TT_TRAIN, **_refs(TT, "configs/thumos14_i3d2s_tadtr.yml", {
        "input_length": (192, "none for ActivityNet: the anet preset's 192-step inputs (stages/presets.py)"),
        "max_seq_len": (192, "none for ActivityNet: the whole resized video"),
        "slice_overlap": (None, "none for ActivityNet: one whole resized video per item"),
        "inference_len": (192, "none for ActivityNet: the whole resized video"),
        "class_agnostic": (True, "none for ActivityNet: the anet preset's video classes")})},
        "post": _TT_POST},
}

# ---------------------------------------------------------------- AFSD (end to end on frames in the reference)
_AS_THUMOS = "configs/thumos14.yaml"
_AS_ANET = "configs/anet.yaml"
_AS_TRAIN = _refs(AS, "AFSD/thumos14/train.py", {
    "warmup_epochs": (0, "no warm-up: torch.optim.Adam at a constant lr"),
    "lr_steps": ([], "no lr schedule (constant)"),
    "ema_decay": (0.0, "no EMA"),
    "grad_clip": (0.0, "no gradient clipping"),
    "decay_exempt": (False, "Adam(net.parameters(), weight_decay): every parameter"),
    "crop_ratio": (None, "fixed clips, no random crop"),
    "input_length": (None, "native grid"),
})
_AS_SHARED = {  # set alike in both configs
    "score_thresh": (0.01, "testing.conf_thresh"),
    "pre_nms_topk": (5000, "testing.top_k"),
}
_AS_THUMOS_MODEL = _refs(AS, _AS_THUMOS, {**_AS_SHARED, "nms_sigma": (0.5, "testing.nms_sigma")})
_AS_ANET_MODEL = _refs(AS, _AS_ANET, {**_AS_SHARED, "nms_sigma": (0.85, "testing.nms_sigma")})
_AS_THUMOS_TRAIN = {**_AS_TRAIN, **_refs(AS, _AS_THUMOS, {
    "epochs": (16, "training.max_epoch"),
    "batch_size": (1, "training.batch_size"),
    "lr": (1e-5, "training.learning_rate"),
    "weight_decay": (1e-3, "training.weight_decay"),
    "max_seq_len": (192, "dataset.training.clip_length 256 frames at 10 fps = 25.6 s = 192 steps of the THUMOS14 "
                         "I3D grid (stride 4 at 30 fps)"),
    "slice_overlap": (0.883, "dataset.training.clip_stride 30 of clip_length 256 frames: 1 - 30 / 256"),
    "inference_len": (192, "dataset.testing.clip_length 256 frames (clip_stride 128: half overlap)"),
    "class_agnostic": (False, "dataset.num_classes 21 (20 + background)")})}
# ActivityNet: one whole video, resized to the anet preset's 192 steps, per item.
_AS_ANET_TRAIN = {**_AS_TRAIN, **_refs(AS, _AS_ANET, {
    "input_length": (192, "dataset.training.clip_length 768 frames per video (fixed length): the anet preset's "
                          "192 steps"),
    "max_seq_len": (192, "dataset.training.clip_length = clip_stride 768: the whole video"),
    "slice_overlap": (None, "clip_stride = clip_length: one whole video per item"),
    "inference_len": (192, "dataset.testing.clip_length 768: the whole video"),
    "epochs": (10, "testing.checkpoint_path checkpoint-10 (of training.max_epoch 16)"),
    "batch_size": (1, "training.batch_size"),
    "lr": (1e-4, "training.learning_rate"),
    "weight_decay": (1e-4, "training.weight_decay"),
    "class_agnostic": (True, "AFSD/anet/test.py num_classes 2 (action, background) + the external video classes "
                             "(cuhk_val_simp_share.json)")})}
AFSD = {
    "thumos14": {"model": _AS_THUMOS_MODEL, "train": _AS_THUMOS_TRAIN,
                 "post": _detect_post(_AS_THUMOS_MODEL, Ref(0.0, f"{AS} {_AS_THUMOS}: no voting"), Ref(
                     200, f"{AS} {_AS_THUMOS}: none (testing.top_k 5000 before NMS): the preset's 200"))},
    "anet": {"model": _AS_ANET_MODEL, "train": _AS_ANET_TRAIN,
             "post": _detect_post(_AS_ANET_MODEL, Ref(0.0, f"{AS} {_AS_ANET}: no voting"),
                                  Ref(100, f"{AS} {_AS_ANET}: none: the anet preset's 100"))},
}

PUBLISHED: dict[str, dict[str, dict[str, dict[str, Ref]]]] = {
    "afsd": AFSD, "actionformer": ACTIONFORMER, "tridet": TRIDET, "tadtr": TADTR}
