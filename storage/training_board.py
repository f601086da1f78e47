"""TensorBoard event files of a training run, written into the run's own artifact folder while it trains.

`tensorboard --logdir runs/` then shows every encoder and detector run by its folder name (encoder-<hash>,
detector-<hash>): each loss term, lr, EMA decay, gradient norm (per iteration), steps/s (per epoch), the health
figures (after training) and, written later by Evaluate into the same folder, mAP per tIoU.

The artifact folder is created atomically at the end of a run (DoneFileTarget.writer): the live events go to the
final folder (not complete without its DONE file), and `move_into` carries them into the new folder before the
rename. Optional: without the `tensorboard` package a clear message names it and only the CSV logs are written.
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path

log = logging.getLogger("pipeline")

EVENTS_GLOB = "events.out.tfevents.*"
MISSING = ("TensorBoard logs are off: the 'tensorboard' package is not installed (pip install tensorboard, or "
           "pip install 'tal-pipeline[tensorboard]'); only the CSV logs are written")
# Columns of a log row that are its position, not a figure to plot.
POSITION = ("epoch", "iteration")
_warned = {"missing": False}


def summary_writer_class():
    """torch's SummaryWriter, or None (one warning per process) when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch.utils.tensorboard imports the tensorboard package
        if not _warned["missing"]:
            log.warning(MISSING)
            _warned["missing"] = True
        return None
    return SummaryWriter


def _number(value) -> float | None:
    """A plottable scalar (bools as 0/1), or None for text, lists and non-finite values."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


class TrainingBoard:
    """Scalars of one training run: `rows(log_rows)` after each epoch, `figures(...)` once, `move_into(tmp)`."""

    def __init__(self, folder: str | Path, group: str = "train"):
        self.folder, self.group = Path(folder), group
        self.seen = 0  # log rows already written
        self.clock = time.perf_counter()
        writer_class = summary_writer_class()
        self.writer = None
        if writer_class is not None:
            if not (self.folder / "DONE").exists():  # an unfinished earlier attempt's events: start over
                for old in self.folder.glob(EVENTS_GLOB):
                    old.unlink()
            self.writer = writer_class(log_dir=str(self.folder))

    def rows(self, log_rows: list[dict]) -> None:
        """Write the rows added since the last call (one per iteration) and this stretch's steps/s."""
        new, self.seen = log_rows[self.seen:], len(log_rows)
        now, elapsed = time.perf_counter(), time.perf_counter() - self.clock
        self.clock = now
        if self.writer is None or not new:
            return
        for row in new:
            for key, value in row.items():
                if key not in POSITION and (x := _number(value)) is not None:
                    self.writer.add_scalar(f"{self.group}/{key}", x, int(row["iteration"]))
        self.writer.add_scalar("throughput/steps_per_s", len(new) / max(elapsed, 1e-9), int(new[-1]["iteration"]))
        self.writer.flush()  # live: the epoch's points are on disk for a running tensorboard

    def figures(self, prefix: str, values: dict, step: int) -> None:
        """Scalars `<prefix>/<key>` at `step` (health check, held-out separation), nested dicts as key/sub."""
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, dict):
                self.figures(f"{prefix}/{key}", value, step)
            elif (x := _number(value)) is not None:
                self.writer.add_scalar(f"{prefix}/{key}", x, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def move_into(self, folder: str | Path) -> None:
        """Close and move the event files into `folder` (the run's new artifact folder, before its rename)."""
        self.close()
        for file in self.folder.glob(EVENTS_GLOB):
            shutil.move(str(file), Path(folder) / file.name)


def write_evaluation(run_folder: str | Path, name: str, mean_ap: dict, average: float, step: int) -> Path | None:
    """mAP per tIoU (`evaluation/mAP@<t>`, `evaluation/average_mAP`) at `step` into the training run's folder, in
    an event file of its own named after the evaluation `name` (a rerun replaces it). None without tensorboard."""
    writer_class = summary_writer_class()
    if writer_class is None:
        return None
    run_folder = Path(run_folder)
    suffix = f".{name}"
    for old in run_folder.glob(EVENTS_GLOB + suffix):
        old.unlink()
    writer = writer_class(log_dir=str(run_folder), filename_suffix=suffix)
    for tiou, value in mean_ap.items():
        writer.add_scalar(f"evaluation/mAP@{tiou}", float(value), step)
    writer.add_scalar("evaluation/average_mAP", float(average), step)
    writer.close()
    return next(run_folder.glob(EVENTS_GLOB + suffix), None)
