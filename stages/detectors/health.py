"""The post-training health check: a run is flagged (never dropped) when its regression branch has collapsed on
the foreground or training did not lower its loss.

The training videos are checked whole, in windows of max_seq_len steps, a batch of at most HEALTH_BATCH_WINDOWS
windows of one video at a time, collated when it is used: memory holds one batch, not every window of every
video (benchmarks/bench_health_memory.py measures it).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from tal_pipeline.stages.detectors.data import VideoItem, collate, crop_item, window_starts

# Windows per batch: a video of up to this many windows (4,096 steps at max_seq_len 256) is one batch, as it
# always was; a longer one is split, the loss averaged over its batches.
HEALTH_BATCH_WINDOWS = 16


def health_batches(items: list[VideoItem], max_seq_len: int, dev, windows: int = HEALTH_BATCH_WINDOWS
                   ) -> Iterator[tuple]:
    """Per video, its windows of at most max_seq_len steps, `windows` at a time: collated (x, mask, targets)."""
    for item in items:
        size = min(item.features.shape[0], int(max_seq_len))
        starts = window_starts(item.features.shape[0], size)
        for i in range(0, len(starts), windows):
            yield collate([crop_item(item, s0, size) for s0 in starts[i:i + windows]], dev)


def _check_pass(model, batches, seed: int, with_health: bool) -> tuple[float, int, float, str | None]:
    """One pass over the batches: (mean loss, foreground locations, positive locations, criterion)."""
    import torch

    torch.manual_seed(seed)  # auxiliary losses that sample clips (AFSD's BCL) draw the same ones each pass
    losses, fg, positive, criterion = [], 0, 0.0, None
    for x, mask, targets in batches:
        out = model(x, mask)
        if with_health:
            h = model.regression_health(out, targets)
            criterion = h.get("criterion", criterion)
            if h["fg_locations"]:
                fg += h["fg_locations"]
                positive += h["positive_share"] * h["fg_locations"]
        losses.append(float(model.loss(out, targets)["total"]))
    return float(np.mean(losses)), fg, positive, criterion


def training_health(model, initial_state: Mapping, items: list[VideoItem], log_rows: list[dict], cfg: Mapping,
                    dev, seed: int = 0) -> dict:
    """The health check of a trained `model` (its weights are left as they were).

    positive_share: over the training videos (whole, in windows of max_seq_len), the share of foreground
    locations whose predicted start and end distances are both positive (the model's regression_health; a
    set-prediction detector, TadTR, counts its matched queries instead: see its "criterion", recorded as
    positive_share_of).
    loss_ratio: the loss of the trained weights / that of the initial weights, both on those same windows in
    eval mode (a fair comparison: a loss normaliser that moves during training, as ActionFormer's EMA one does,
    makes the raw first- and last-epoch losses incomparable; both are recorded too).
    """
    import torch

    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        loss_trained, fg, positive, criterion = _check_pass(
            model, health_batches(items, cfg["max_seq_len"], dev), seed, with_health=True)
        model.load_state_dict(dict(initial_state))
        loss_initial = _check_pass(model, health_batches(items, cfg["max_seq_len"], dev), seed, False)[0]
        model.load_state_dict(trained)
    model.train(was_training)
    # What a detector counts (its regression_health "criterion"); dense detectors: the default below.
    criterion = criterion or "foreground locations whose predicted start and end distances are both positive"
    return _verdict(fg, positive, criterion, loss_initial, loss_trained, log_rows, cfg)


def _verdict(fg: int, positive: float, criterion: str, loss_initial: float, loss_trained: float,
             log_rows: list[dict], cfg: Mapping) -> dict:
    epochs = sorted({r["epoch"] for r in log_rows})
    health: dict[str, Any] = {"fg_locations": fg, "positive_share": positive / fg if fg else None,
                              "loss_initial_weights": loss_initial, "loss_trained_weights": loss_trained,
                              "loss_ratio": loss_trained / max(loss_initial, 1e-12),
                              "loss_first_epoch": None, "loss_last_epoch": None, "epochs": len(epochs), "problems": [],
                              "positive_share_of": criterion}
    if epochs:
        health["loss_first_epoch"] = float(np.mean([r["total"] for r in log_rows if r["epoch"] == epochs[0]]))
        health["loss_last_epoch"] = float(np.mean([r["total"] for r in log_rows if r["epoch"] == epochs[-1]]))
        if health["positive_share"] is not None and health["positive_share"] < cfg["health_min_positive_share"]:
            health["problems"].append(f"regression branch collapsed: only {100 * health['positive_share']:.1f} % "
                                      f"of {criterion} (needs >= {100 * cfg['health_min_positive_share']:.0f} %)")
        if not np.isfinite(health["loss_ratio"]) or health["loss_ratio"] > cfg["health_max_loss_ratio"]:
            health["problems"].append(f"loss did not fall: {loss_trained:.4g} with the trained weights vs "
                                      f"{loss_initial:.4g} with the initial ones on the training videos (ratio "
                                      f"{health['loss_ratio']:.2f} > {cfg['health_max_loss_ratio']})")
    # An untrained run (the report's sanity floor) has nothing to check: healthy is None, not False.
    health["healthy"] = (not health["problems"]) if epochs else None
    if not epochs:
        health["note"] = "not trained (0 epochs): not checked"
    return health
