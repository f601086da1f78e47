"""Fewer host syncs (issue 28 item 4) and the deterministic mode (item 3): the sync-free paths give the results of
the old ones, bitwise where the old code is the reference."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from tal_pipeline.models.afsd import boundary_pooling
from tal_pipeline.models.tadtr.matcher import hungarian_match, hungarian_match_many
from tal_pipeline.stages.loss_log import LossLog
from tal_pipeline.stages.runtime import WeightAverage, deterministic_mode

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_deterministic_mode_sets_and_restores_the_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
              torch.are_deterministic_algorithms_enabled())
    with pytest.raises(KeyError):
        with deterministic_mode():
            assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
            assert torch.are_deterministic_algorithms_enabled()
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
            raise KeyError("an error inside still restores the flags")
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
            torch.are_deterministic_algorithms_enabled()) == before
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    with deterministic_mode(False):  # off: nothing changes
        assert torch.are_deterministic_algorithms_enabled() == before[2]


def test_foreach_ema_equals_the_per_tensor_loop():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.BatchNorm1d(7), torch.nn.Linear(7, 2))
    ref = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ema = WeightAverage(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(5):
        model(torch.randn(8, 5)).pow(2).sum().backward()  # BatchNorm's running stats and counter move too
        opt.step()
        d = min(0.999, (1.0 + step) / (10.0 + step))
        for k, v in model.state_dict().items():  # the loop it replaces
            if v.dtype.is_floating_point:
                ref[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                ref[k].copy_(v)
        ema.update(d)
    assert all(torch.equal(ref[k], ema.state[k]) for k in ref)
    assert int(ema.state["1.num_batches_tracked"]) == 5


def test_loss_log_copies_in_batches_and_names_the_first_bad_step():
    rows: list[dict] = []
    log = LossLog(rows, "detector x", every=3)
    for i in range(4):
        log.add({"epoch": 0, "iteration": i, "lr": 0.1}, {"total": torch.tensor(float(i), dtype=torch.bfloat16),
                                                          "cls": torch.tensor(i / 3.0)})
        assert len(rows) == (3 if i >= 2 else 0)  # nothing read until `every` steps are pending
    log.flush()
    assert [r["iteration"] for r in rows] == [0, 1, 2, 3] and list(rows[0]) == ["epoch", "iteration", "lr", "total",
                                                                                  "cls"]
    assert rows[1]["cls"] == float(torch.tensor(1 / 3.0)) and isinstance(rows[1]["total"], float)
    with pytest.raises(FloatingPointError, match=r"detector x: non-finite loss at epoch 1, iteration 5"):
        for i, value in ((4, 1.0), (5, math.nan), (6, math.inf)):  # the third add copies the three out
            log.add({"epoch": 1, "iteration": i, "lr": 0.1}, {"total": torch.tensor(value), "cls": torch.tensor(0.0)})


def test_training_rows_keep_their_structure():
    """One dict per step with the same keys as before (the CSV training log and its readers rely on it)."""
    from tal_pipeline.stages.detectors.training import train_detector
    from tests.synthetic_features import synthetic_feature_dataset

    feats, ann, labels, grid, _ = synthetic_feature_dataset(num_videos=3, channels=8, num_classes=2, min_len=50,
                                                            max_len=60)
    _, cfg, rows = train_detector("afsd", feats, ann, labels, grid, {"epochs": 2, "batch_size": 1,
                                                                     "model": {"width": 16}}, progress=False)
    assert len(rows) == cfg["iterations"] == 6 and [r["iteration"] for r in rows] == list(range(6))
    assert list(rows[0])[:3] == ["epoch", "iteration", "lr"] and "total" in rows[0]
    assert all(list(r) == list(rows[0]) for r in rows) and all(isinstance(r["total"], float) for r in rows)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_boundary_pooling_without_host_reads_equals_the_cpu_path(dtype, monkeypatch):
    """The GPU path (all table levels, NaN fix-up always applied, no host read) against the CPU path."""
    torch.manual_seed(0)
    feat = torch.randn(2, 5, 40).relu().to(dtype)
    feat[0, 1, 7] = float("nan")
    regions = torch.rand(2, 9, 2).sort(-1).values * torch.tensor([4.0, 30.0])
    lengths = torch.tensor([40, 33])

    def run():
        f = feat.clone().requires_grad_(True)
        out = boundary_pooling.boundary_max_pool(f, regions, lengths)
        (out.nan_to_num(0.0) * torch.arange(out.numel()).view_as(out)).sum().backward()
        return out.detach(), f.grad, boundary_pooling.boundary_max_pool(feat, regions, lengths)

    cpu = run()
    monkeypatch.setattr(boundary_pooling, "_reads_cheaply", lambda feat: False)
    gpu = run()
    for a, b in zip(cpu, gpu):
        assert torch.equal(a.nan_to_num(-9.0), b.nan_to_num(-9.0))
        assert torch.equal(a.isnan(), b.isnan())


def test_one_copy_of_every_matching_cost_gives_the_same_matches():
    rng = np.random.default_rng(0)
    costs = [torch.from_numpy(rng.normal(size=shape)) for shape in ((6, 3), (6, 0), (4, 4), (5, 1))]
    many = hungarian_match_many(costs)
    for cost, (rows, cols) in zip(costs, many):
        want_rows, want_cols = hungarian_match(cost)
        assert torch.equal(rows, want_rows) and torch.equal(cols, want_cols) and rows.dtype == torch.long
    bad = [costs[0], torch.tensor([[math.nan]])]
    with pytest.raises(FloatingPointError, match="not finite"):
        hungarian_match_many(bad)
