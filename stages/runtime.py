"""Runtime helpers every training and feature stage shares: the one device resolver, seeding, the warm-up +
cosine learning-rate schedule, the warm-up EMA decay and training progress (torch and tqdm are imported inside).
"""
from __future__ import annotations

import math
import random

import numpy as np


def resolve_device(device=None):
    """torch.device for "auto" (or None, ""): CUDA when present, else CPU; or "cpu", "cuda", "cuda:N" (or a
    torch.device). Raises ValueError naming the value when it is none of these or asks for a GPU that is absent."""
    import torch

    if device is None or device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine (use cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def ema_decay_at(n: int, decay: float) -> float:
    """Warm-up EMA decay min(d, (1+n)/(10+n)) at update n (docs/method.md §8): a fixed 0.999 over a few hundred
    updates would leave the average mostly made of the random initial weights."""
    return min(decay, (1.0 + n) / (10.0 + n))


class TrainingProgress:
    """An iteration bar on a terminal only (in a log file every refresh would be one more line) and the per-epoch
    callback on_epoch(epochs_done, epochs) that luigi's progress channel listens to."""

    def __init__(self, iterations: int, epochs: int, desc: str, show: bool = True, on_epoch=None):
        import sys

        from tqdm import tqdm

        self.bar = tqdm(total=iterations, desc=desc, disable=not (show and sys.stderr.isatty()), leave=False)
        self.epochs, self.on_epoch = epochs, on_epoch

    def iteration(self, loss: float) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3f}")

    def epoch(self, epoch: int) -> None:
        if self.on_epoch is not None:
            self.on_epoch(epoch + 1, self.epochs)

    def close(self) -> None:
        self.bar.close()
