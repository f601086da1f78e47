"""The post-training health check in batches (stages/detectors/health.py): every window of every training video
is seen once, no batch holds more than its share of windows or mixes videos, and the figures equal the
all-at-once check's (the old code's) where a video fits one batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic_features import synthetic_feature_dataset

from tal_pipeline.models.actionformer.model import ActionFormer
from tal_pipeline.stages.detectors.data import build_training_set, collate, crop_item, window_starts
from tal_pipeline.stages.detectors.health import health_batches, training_health
from tal_pipeline.stages.detectors.training import resolve_train_config


@pytest.fixture(scope="module")
def items():
    feats, ann, labels, grid, _ = synthetic_feature_dataset(num_videos=3, channels=8, num_classes=2, seed=4,
                                                            min_len=60, max_len=150)
    return build_training_set(feats, ann, labels, grid), len(labels)


def test_health_batches_cover_every_window_once_in_bounded_batches(items):
    items, _ = items
    batches = health_batches(items, max_seq_len=16, dev=torch.device("cpu"), windows=3)
    assert not isinstance(batches, list)  # collated one batch at a time, when used
    got = list(batches)
    expected = [crop_item(it, s0, 16) for it in items for s0 in window_starts(it.features.shape[0], 16)]
    assert sum(x.shape[0] for x, _, _ in got) == len(expected) > 3 * len(items)
    assert max(x.shape[0] for x, _, _ in got) == 3
    # In order, windows of one video per batch: the concatenated inputs are exactly the windows.
    flat = torch.cat([x for x, _, _ in got])  # (N, C, 16)
    for i, (f, _, _) in enumerate(expected):
        assert torch.equal(flat[i, :, :f.shape[0]], torch.from_numpy(f).T)
    per_video = [-(-len(window_starts(it.features.shape[0], 16)) // 3) for it in items]
    assert len(got) == sum(per_video)  # no batch mixes two videos


def _old_all_at_once(model, initial, items, max_seq_len, seed):
    """The check as it was: every video's windows collated at once, one batch per video."""
    batches = [collate([crop_item(it, s0, min(it.features.shape[0], max_seq_len))
                        for s0 in window_starts(it.features.shape[0], min(it.features.shape[0], max_seq_len))],
                       torch.device("cpu")) for it in items]
    model.eval()
    with torch.no_grad():
        fg = pos = 0.0
        for x, m, t in batches:
            h = model.regression_health(model(x, m), t)
            fg, pos = fg + h["fg_locations"], pos + h["positive_share"] * h["fg_locations"]
        torch.manual_seed(seed)
        trained = np.mean([float(model.loss(model(x, m), t)["total"]) for x, m, t in batches])
        state = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(initial)
        torch.manual_seed(seed)
        first = np.mean([float(model.loss(model(x, m), t)["total"]) for x, m, t in batches])
        model.load_state_dict(state)
    return pos / fg, trained, first


def test_health_equals_the_all_at_once_check_and_keeps_the_weights(items):
    items, classes = items
    torch.manual_seed(0)
    model = ActionFormer(8, classes, width=16, levels=3, heads=2, window=5)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # "trained": any other weights
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = resolve_train_config("actionformer", {"max_seq_len": 32})
    rows = [{"epoch": 0, "total": 2.0}, {"epoch": 1, "total": 1.0}]
    health = training_health(model, initial, items, rows, cfg, torch.device("cpu"), seed=3)
    share, loss_trained, loss_initial = _old_all_at_once(model, initial, items, 32, seed=3)
    assert max(len(window_starts(it.features.shape[0], 32)) for it in items) <= 16  # one batch per video
    assert health["positive_share"] == pytest.approx(share, rel=1e-12)
    assert health["loss_trained_weights"] == pytest.approx(loss_trained, rel=1e-6)
    assert health["loss_initial_weights"] == pytest.approx(loss_initial, rel=1e-6)
    assert health["loss_trained_weights"] != health["loss_initial_weights"]
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
    assert health["epochs"] == 2 and health["loss_first_epoch"] == 2.0 and health["loss_last_epoch"] == 1.0
