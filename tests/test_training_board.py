"""TensorBoard events of a training run (storage.training_board), read back with tensorboard's own reader: the
tags and step counts of a real detector training, the live writes per epoch, mAP per tIoU added to the same run,
and the message (and CSV logs only) without the tensorboard package."""
import logging
import math
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.stages.detectors.training import train_detector
from tal_pipeline.storage import training_board
from tal_pipeline.storage.training_board import TrainingBoard, write_evaluation
from tests.synthetic_features import synthetic_feature_dataset

pytestmark = pytest.mark.usefixtures("torch_one_thread")

GRID = TimeGrid(fps=10.0, window=4, stride=2)
CFG = {"epochs": 3, "batch_size": 4, "lr": 2e-3, "warmup_epochs": 1, "max_seq_len": 64, "grad_clip": 0.5,
       "model": {"width": 16, "levels": 3, "heads": 2, "window": 5}}


def scalars(folder) -> dict[str, list]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real ActionFormer training (6 videos, 3 epochs of 2 iterations) with its board, as TrainDetector runs it."""
    folder = tmp_path_factory.mktemp("board") / "detector-0123456789"
    feats, ann, labels, grid, _ = synthetic_feature_dataset(6, channels=8, num_classes=2, seed=1, min_len=30,
                                                            max_len=50)
    board = TrainingBoard(folder)
    live = []  # the points on disk after each epoch: a running tensorboard sees them

    def on_log(rows):
        board.rows(rows)
        live.append(len(scalars(folder).get("train/total", [])))

    state, cfg, rows = train_detector("actionformer", feats, ann, labels, grid, CFG, seed=0, progress=False,
                                      on_log=on_log)
    board.figures("health", cfg["health"], cfg["iterations"])
    done = folder.parent / "new"
    done.mkdir()
    board.move_into(done)  # what TrainDetector does inside its atomic writer
    return {"folder": done, "rows": rows, "cfg": cfg, "live": live}


def test_detector_run_events_have_every_figure_at_every_iteration(run):
    rows, tags = run["rows"], scalars(run["folder"])
    iterations = [r["iteration"] for r in rows]
    assert len(rows) == 3 * 2 and iterations == list(range(6))
    for key in ("total", "cls", "reg", "lr", "grad_norm", "ema_decay"):  # every loss term, lr, EMA decay, grad norm
        points = tags[f"train/{key}"]
        assert [p.step for p in points] == iterations, key
        assert [p.value for p in points] == pytest.approx([r[key] for r in rows], rel=1e-6), key
    assert set(tags) >= {f"train/{k}" for k in rows[0] if k not in ("epoch", "iteration")}
    # the EMA decay logged is the one applied: min(decay, (1 + n) / (10 + n))
    assert [p.value for p in tags["train/ema_decay"]] == pytest.approx([(1 + n) / (10 + n) for n in iterations])
    # the gradient norm is the one before clipping at 0.5 (clipping would cap it)
    assert max(p.value for p in tags["train/grad_norm"]) > 0.5
    speed = tags["throughput/steps_per_s"]
    assert [p.step for p in speed] == [1, 3, 5] and all(p.value > 0 for p in speed)  # once per epoch
    health = {t.split("/", 1)[1]: v[0] for t, v in tags.items() if t.startswith("health/")}
    assert {"positive_share", "loss_ratio", "loss_initial_weights", "loss_trained_weights"} <= set(health)
    assert all(p.step == 6 for p in health.values())
    assert health["loss_ratio"].value == pytest.approx(run["cfg"]["health"]["loss_ratio"], rel=1e-6)
    assert run["live"] == [2, 4, 6]  # written as training goes, not at the end
    assert not list(run["folder"].parent.glob("detector-0123456789/events.out.tfevents.*"))  # moved, not copied


def test_evaluate_adds_map_per_tiou_to_the_same_run_and_a_rerun_replaces_it(run):
    folder = run["folder"]
    write_evaluation(folder, "evaluation-aaaaaaaaaa", {0.3: 0.9, 0.5: 0.5}, 0.7, 6)
    write_evaluation(folder, "evaluation-aaaaaaaaaa", {0.3: 0.8, 0.5: 0.4}, 0.6, 6)  # a forced rerun
    tags = scalars(folder)
    assert [(p.step, p.value) for p in tags["evaluation/mAP@0.3"]] == [(6, pytest.approx(0.8))]
    assert [p.value for p in tags["evaluation/average_mAP"]] == [pytest.approx(0.6)]
    assert len(tags["train/total"]) == 6  # the training curves are still there


def test_an_unfinished_attempts_events_are_dropped(tmp_path):
    folder = tmp_path / "detector-0123456789"
    first = TrainingBoard(folder)
    first.rows([{"epoch": 0, "iteration": 0, "total": 5.0}])
    first.close()  # a crash: the folder never got its DONE file
    second = TrainingBoard(folder)
    second.rows([{"epoch": 0, "iteration": 0, "total": 1.0}])
    second.close()
    assert [p.value for p in scalars(folder)["train/total"]] == [1.0]


def test_without_tensorboard_a_message_names_the_package_and_nothing_breaks(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when not installed
    monkeypatch.setitem(training_board._warned, "missing", False)
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        board = TrainingBoard(tmp_path / "run")
        board.rows([{"epoch": 0, "iteration": 0, "total": math.pi}])
        board.figures("health", {"loss_ratio": 0.5}, 1)
        board.move_into(tmp_path)
        assert write_evaluation(tmp_path, "evaluation-x", {0.5: 1.0}, 1.0, 1) is None
    assert "'tensorboard' package is not installed" in caplog.text and "pip install tensorboard" in caplog.text
    assert caplog.text.count("not installed") == 1  # once per process
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
