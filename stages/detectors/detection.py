"""Detector inference: a checkpoint's detector rebuilt, sliding-window predictions over whole videos, and the
detections per video in seconds (pure functions; the Detect task and `tal-pipeline detect` wrap them).

Units: detectors work in continuous feature-step coordinates where feature i is centred at index i.
Seconds map to steps only through `TimeGrid.to_steps` (stages/data/timegrid.py) and back only through its
exact inverse `TimeGrid.to_seconds`, so a predicted step interval [a, b] covers the time from the centre
time of (fractional) feature a to that of feature b, and a perfect prediction of a ground truth gives
back its seconds exactly.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tal_pipeline.stages.bapg.calibration import calibrate_videos
from tal_pipeline.stages.data.timegrid import TimeGrid, video_grid
from tal_pipeline.stages.detectors.data import check_features, window_starts
from tal_pipeline.stages.detectors.resize import resize_features
from tal_pipeline.stages.runtime import resolve_device


def load_detector(model_state: Mapping, config_dict: Mapping, device: str = "auto"):
    """Rebuild the detector of a checkpoint (strict weight loading) on `device`, in eval mode."""
    from tal_pipeline.models.detector_registry import build_detector

    dev = resolve_device(device)
    # The recorded options are complete (resolved at training time): today's defaults do not matter.
    model = build_detector(config_dict["name"], int(config_dict["in_channels"]), int(config_dict["num_classes"]),
                           config_dict["model"], bapg_channels=int(config_dict["bapg_channels"]),
                           fusion=config_dict["fusion"])
    model.load_state_dict(dict(model_state), strict=True)
    return model.to(dev).eval(), dev


def predict_video(model, dev, feats: np.ndarray, max_seq_len: int, max_dets: int, nms_sigma: float | None = None,
                  voting_thresh: float = 0.0, precision: str = "fp32"):
    """Sliding-window detections of one video (T, C): segments (N, 2) steps, scores (N,), labels (N,) numpy.

    Windows overlap by half; each window keeps only detections whose centre lies in its own share of the
    video (between the midpoints to its neighbours' centres), so overlapping windows never duplicate.
    nms_sigma None: the detector's own Soft-NMS sigma; voting_thresh > 0: segment voting (models/nms.py).
    precision: the forward pass's (stages.precision); decoding and NMS read its outputs in fp32.
    """
    import torch

    from tal_pipeline.stages.precision import as_fp32, autocast

    t = feats.shape[0]
    starts = window_starts(t, max_seq_len)
    size = min(t, max_seq_len)
    x = torch.zeros(len(starts), feats.shape[1], size)
    mask = torch.zeros(len(starts), size, dtype=torch.bool)
    for i, s in enumerate(starts):
        chunk = feats[s:s + size]
        x[i, :, :chunk.shape[0]] = torch.from_numpy(np.ascontiguousarray(chunk.T))
        mask[i, :chunk.shape[0]] = True
    with torch.no_grad():
        with autocast(dev, precision):
            outputs = model(x.to(dev), mask.to(dev))
        preds = model.predict(as_fp32(outputs), max_dets=max_dets, nms_sigma=nms_sigma, voting_thresh=voting_thresh)
    centres = [s + size / 2.0 for s in starts]
    segs, scores, labs = [], [], []
    for i, (s, (seg, sc, lab)) in enumerate(zip(starts, preds)):
        seg = seg.double().numpy() + s
        mid = seg.mean(axis=1)
        lo = -np.inf if i == 0 else 0.5 * (centres[i - 1] + centres[i])
        hi = np.inf if i == len(starts) - 1 else 0.5 * (centres[i] + centres[i + 1])
        own = (mid >= lo) & (mid < hi)
        segs.append(seg[own])
        scores.append(sc.double().numpy()[own])
        labs.append(lab.numpy()[own])
    segs, scores, labs = np.concatenate(segs), np.concatenate(scores), np.concatenate(labs)
    order = np.argsort(-scores, kind="stable")[:max_dets]
    return segs[order], scores[order], labs[order]


def detect(name: str, model_state: Mapping, config_dict: Mapping, features: Mapping[str, np.ndarray],
           labels: list[str], time_grid: TimeGrid | Mapping[str, TimeGrid], durations: Mapping[str, float],
           max_dets: int = 200, device: str = "auto", nms_sigma: float | None = None, voting_thresh: float = 0.0
           ) -> dict[str, list[dict]]:
    """Detections per video: [{"segment": [start_s, end_s], "label": class name, "score": float}], best first.

    time_grid: one TimeGrid for every video or {video: TimeGrid} (the native grids). Segments are clipped to
    [0, duration]; at most max_dets per video; a segment may carry several classes. A checkpoint trained on
    fixed-length inputs (config_dict["input_length"]) gets every video resized to that length, on its resampled
    grid (stages.detectors.resize), as in training. nms_sigma / voting_thresh: see predict_video.
    """
    if config_dict.get("name") != name:
        raise ValueError(f"checkpoint is for detector {config_dict.get('name')!r}, not {name!r}")
    if len(labels) != int(config_dict["num_classes"]):
        raise ValueError(f"{len(labels)} class names given, the checkpoint has {config_dict['num_classes']} classes")
    model, dev = load_detector(model_state, config_dict, device)
    train = config_dict["train"]
    # Detection windows: the recipe's inference_len (ActionFormer's max_buffer_len_factor x max_seq_len), else
    # the training length.
    max_seq_len = int(train["inference_len"] or config_dict["max_seq_len"])
    input_length = config_dict["input_length"]
    precision = train["precision"]  # the training's
    out: dict[str, list[dict]] = {}
    # rank_normalise (a fusion setting): whole videos, as in training, before any resize or window
    features = calibrate_videos(features, int(config_dict["bapg_channels"]), config_dict["fusion"])
    for video in sorted(features):
        feats = check_features(video, features[video], int(config_dict["in_channels"]))
        if video not in durations:
            raise ValueError(f"video {video!r}: no duration given")
        duration = float(durations[video])
        grid = video_grid(time_grid, video)
        if input_length is not None:
            grid = grid.resampled(feats.shape[0], int(input_length))
            feats = resize_features(feats, int(input_length))
        segs, scores, labs = predict_video(model, dev, feats, max_seq_len, max_dets, nms_sigma, voting_thresh,
                                           precision)
        sec = np.clip(grid.to_seconds(segs), 0.0, duration)  # (N, 2)
        keep = sec[:, 1] > sec[:, 0]
        out[video] = [{"segment": [float(a), float(b)], "label": labels[int(c)], "score": float(s)}
                      for (a, b), s, c in zip(sec[keep], scores[keep], labs[keep])]
    return out
