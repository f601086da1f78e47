"""The reference configurations' values, transcribed per reference file (the test oracle of
tests/test_recipes.py; read with `git --git-dir=<fetched mirror> show HEAD:<file>`), in this project's option names
and conventions: `epochs` counts warm-up epochs; "model." constructor options, "train." training settings,
"post." Detect settings. Each value is the reference's, converted where a comment says so.
"""
from __future__ import annotations

RANGES = [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]]  # model.regression_range

# happyharrycn/actionformer_release@61ea7eb
AF_DEFAULTS = {  # libs/core/config.py DEFAULTS (values a config file does not set)
    "model.levels": 6, "model.embed_convs": 2, "model.stem_blocks": 2, "model.heads": 4, "model.dropout": 0.0,
    "model.drop_path": 0.1, "model.head_convs": 2, "model.regression_ranges": RANGES, "model.reg_weight": 1.0,
    "model.label_smoothing": 0.0, "model.abs_pe": False, "model.nms_sigma": 0.5, "model.min_duration": 0.05,
    "train.warmup_epochs": 5,
    "train.lr_min": 0.0, "train.lr_steps": None,
}
AF_CODE = {  # blocks.py, losses.py, meta_archs.py, train_utils.py, data_utils.py
    "libs/modeling/blocks.py": {"model.mlp_ratio": 4, "model.layer_scale_init": 1e-4},
    "libs/modeling/losses.py": {"model.focal_alpha": 0.25, "model.focal_gamma": 2.0},
    "libs/modeling/meta_archs.py": {"model.loss_norm_momentum": 0.9, "model.topk_per_level": True},
    "libs/utils/train_utils.py": {"train.decay_exempt": True, "train.ema_decay": 0.999},
    "libs/datasets/data_utils.py": {"train.crop_tries": 200},
}
ACTIONFORMER = {
    "thumos14": {
        "libs/core/config.py": {**AF_DEFAULTS, "model.width": 512},
        **AF_CODE,
        "configs/thumos_i3d.yaml": {
            "model.window": 19, "model.cls_prior": 0.01, "model.center_radius": 1.5, "model.loss_norm_init": 100.0,
            "model.score_thresh": 0.001, "model.pre_nms_topk": 2000, "model.max_dets": 200,
            "train.epochs": 35, "train.batch_size": 2, "train.lr": 1e-4, "train.weight_decay": 0.05,
            "train.max_seq_len": 2304, "train.crop_ratio": [0.9, 1.0], "train.trunc_thresh": 0.5,
            "train.grad_clip": 1.0, "train.input_length": None, "train.class_agnostic": False,
            "train.inference_len": 2304 * 6,
            "post.max_dets": 200, "post.nms_sigma": 0.5, "post.voting_thresh": 0.0,
        },
    },
    "anet": {
        "libs/core/config.py": {k: v for k, v in AF_DEFAULTS.items()
                                if k not in ("model.abs_pe", "model.label_smoothing", "model.reg_weight",
                                             "model.drop_path", "model.nms_sigma", "model.min_duration")},
        **AF_CODE,
        "configs/anet_i3d.yaml": {
            "model.width": 256, "model.window": [7, 7, 7, 7, 7, 13], "model.abs_pe": True,
            "model.label_smoothing": 0.1, "model.reg_weight": 2.0, "model.drop_path": 0.1, "model.cls_prior": 0.01,
            "model.center_radius": 1.5, "model.loss_norm_init": 200.0, "model.score_thresh": 0.001,
            "model.pre_nms_topk": 2000, "model.nms_sigma": 0.75, "model.max_dets": 100, "model.min_duration": 0.001,
            "train.epochs": 15, "train.batch_size": 16, "train.lr": 1e-3, "train.weight_decay": 0.05,
            "train.input_length": 192, "train.max_seq_len": 192, "train.crop_ratio": [0.9, 1.0],
            "train.trunc_thresh": 0.5, "train.grad_clip": 1.0, "train.class_agnostic": True,
            "train.inference_len": 192,
            "post.max_dets": 100, "post.nms_sigma": 0.75, "post.voting_thresh": 0.9,
        },
    },
}

# dingfengshi/TriDet@764b816
TD_DEFAULTS = {  # libs/core/config.py
    "model.levels": 6, "model.embed_convs": 2, "model.stem_layers": 2, "model.drop_path": 0.1,
    "model.head_convs": 2, "model.reg_weight": 1.0, "model.label_smoothing": 0.0, "model.abs_pe": False,
    "model.nms_sigma": 0.5, "model.min_duration": 0.05, "train.lr_steps": None,
}
TD_CODE = {
    "libs/modeling/blocks.py": {"model.groups": 16, "model.layer_scale_init": 1e-4},
    "libs/modeling/losses.py": {"model.focal_alpha": 0.25, "model.focal_gamma": 2.0},
    "libs/modeling/meta_archs.py": {"model.loss_norm_momentum": 0.9, "model.topk_per_level": True},
    "libs/utils/train_utils.py": {"train.decay_exempt": True, "train.ema_decay": 0.999},
    "libs/datasets/data_utils.py": {"train.crop_tries": 200},
}
TD_BOTH = {"model.regression_ranges": RANGES, "model.cls_prior": 0.01, "model.center_radius": 1.5,
           "model.score_thresh": 0.001, "model.pre_nms_topk": 2000}
TRIDET = {
    "thumos14": {
        "libs/core/config.py": {**TD_DEFAULTS, "model.width": 512, "train.lr_min": 1e-8},
        **TD_CODE,
        "configs/thumos_i3d.yaml": {
            **TD_BOTH, "model.window": 1, "model.k": 5.0, "model.mlp_ratio": 768 / 512, "model.num_bins": 16,
            "model.iou_weight_power": 0.2, "model.input_noise": 0.0005, "model.loss_norm_init": 100.0,
            "model.max_dets": 2000,
            "train.epochs": 40, "train.warmup_epochs": 20, "train.batch_size": 2, "train.lr": 1e-4,
            "train.weight_decay": 0.025, "train.max_seq_len": 2304, "train.crop_ratio": [0.9, 1.0],
            "train.trunc_thresh": 0.5, "train.grad_clip": 1.0, "train.input_length": None,
            "train.class_agnostic": False, "train.inference_len": 2304 * 6,
            "post.max_dets": 2000, "post.nms_sigma": 0.5, "post.voting_thresh": 0.0,
        },
    },
    "anet": {
        "libs/core/config.py": {k: v for k, v in TD_DEFAULTS.items()
                                if k not in ("model.abs_pe", "model.label_smoothing", "model.nms_sigma",
                                             "model.min_duration")},
        **TD_CODE,
        "configs/anet_tsp.yaml": {
            **TD_BOTH, "model.width": 256, "model.window": 15, "model.k": 1.3, "model.mlp_ratio": 2048 / 256,
            "model.sgp_init_std": 0.2, "model.abs_pe": True, "model.num_bins": 12, "model.iou_weight_power": 1.0,
            "model.input_noise": 0.5, "model.label_smoothing": 0.1, "model.loss_norm_init": 400.0,
            "model.nms_sigma": 0.7, "model.max_dets": 200, "model.min_duration": 0.1,
            "train.epochs": 15, "train.warmup_epochs": 10, "train.batch_size": 16, "train.lr": 1e-3,
            "train.lr_min": 5e-5, "train.weight_decay": 0.04, "train.input_length": None, "train.max_seq_len": 768,
            "train.crop_ratio": [0.9, 1.0], "train.trunc_thresh": 0.5, "train.grad_clip": 0.4,
            "train.class_agnostic": True, "train.inference_len": 768,
            "post.max_dets": 200, "post.nms_sigma": 0.7, "post.voting_thresh": 0.95,
        },
    },
}

# xlliu7/TadTR@983ae14 (THUMOS14 only)
TT_OPTS = {  # opts.py
    "model.width": 256, "model.heads": 8, "model.enc_points": 4, "model.dec_points": 4, "model.dropout": 0.1,
    "model.cost_class": 6.0, "model.cost_seg": 5.0, "model.cost_iou": 2.0, "model.cls_weight": 2.0,
    "model.seg_weight": 5.0, "model.iou_weight": 2.0, "model.act_weight": 4.0, "model.aux_loss": True,
    "model.focal_alpha": 0.25, "model.max_dets": 100, "model.nms_sigma": None,
    "train.epochs": 16, "train.warmup_epochs": 0, "train.lr_steps": [14], "train.lr_gamma": 0.1,
    "train.batch_size": 16, "train.lr": 2e-4, "train.weight_decay": 1e-4, "train.decay_exempt": False,
    "train.grad_clip": 0.1, "train.ema_decay": 0.0,
    "post.max_dets": 100, "post.nms_sigma": None, "post.voting_thresh": 0.0,
}
TT_YML = {  # configs/thumos14_i3d2s_tadtr.yml
    "model.enc_layers": 4, "model.dec_layers": 4, "model.queries": 40, "model.mlp_ratio": 1024 // 256,
    "train.max_seq_len": 128, "train.slice_overlap": 0.75, "train.crop_ratio": None, "train.inference_len": 128,
    "train.input_length": None, "train.class_agnostic": False,
}
TADTR = {
    "thumos14": {"opts.py": TT_OPTS, "configs/thumos14_i3d2s_tadtr.yml": TT_YML},
    "anet": {"opts.py": TT_OPTS, "configs/thumos14_i3d2s_tadtr.yml": {
        **TT_YML, "train.input_length": 192, "train.max_seq_len": 192, "train.slice_overlap": None,
        "train.inference_len": 192, "train.class_agnostic": True}},
}

# TencentYoutuResearch/ActionDetection-AFSD@ed86a0d (frames end to end: what carries over to features)
AS_TRAIN_PY = {"train.warmup_epochs": 0, "train.lr_steps": [], "train.ema_decay": 0.0, "train.grad_clip": 0.0,
               "train.decay_exempt": False, "train.crop_ratio": None, "train.input_length": None}
AFSD = {
    "thumos14": {
        "AFSD/thumos14/train.py": AS_TRAIN_PY,
        "configs/thumos14.yaml": {
            "model.score_thresh": 0.01, "model.pre_nms_topk": 5000, "model.nms_sigma": 0.5,
            "train.epochs": 16, "train.batch_size": 1, "train.lr": 1e-5, "train.weight_decay": 1e-3,
            "train.max_seq_len": 192,  # 256 frames at 10 fps = 25.6 s x 7.5 steps / s
            "train.slice_overlap": 0.883,  # 1 - clip_stride 30 / clip_length 256
            "train.inference_len": 192, "train.class_agnostic": False,
            "post.max_dets": 200, "post.nms_sigma": 0.5, "post.voting_thresh": 0.0,
        },
    },
    "anet": {
        "AFSD/thumos14/train.py": {k: v for k, v in AS_TRAIN_PY.items() if k != "train.input_length"},
        "configs/anet.yaml": {
            "model.score_thresh": 0.01, "model.pre_nms_topk": 5000, "model.nms_sigma": 0.85,
            "train.epochs": 10, "train.batch_size": 1, "train.lr": 1e-4, "train.weight_decay": 1e-4,
            "train.input_length": 192, "train.max_seq_len": 192, "train.slice_overlap": None,
            "train.inference_len": 192, "train.class_agnostic": True,
            "post.max_dets": 100, "post.nms_sigma": 0.85, "post.voting_thresh": 0.0,
        },
    },
}

REFERENCE = {"actionformer": ACTIONFORMER, "tridet": TRIDET, "tadtr": TADTR, "afsd": AFSD}
