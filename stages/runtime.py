"""Runtime helpers every training and feature stage shares: the one device resolver, seeding, the warm-up +
cosine learning-rate schedule, the warm-up EMA decay and training progress (torch and tqdm are imported inside).
"""
from __future__ import annotations

import math
import os
import random
from contextlib import contextmanager

import numpy as np

# Forces the number of GPUs the scheduler sees (tests fake a count with it; "0" hides a GPU from the scheduler).
GPUS_ENV = "TAL_PIPELINE_GPUS"


def visible_gpu_count() -> int:
    """CUDA devices as torch sees them (CUDA_VISIBLE_DEVICES applied), without creating a CUDA context: NVML's
    count, so luigi's scheduling process may still fork its task processes afterwards. $TAL_PIPELINE_GPUS wins."""
    forced = os.environ.get(GPUS_ENV, "").strip()
    if forced:
        if not forced.isdigit():
            raise ValueError(f"${GPUS_ENV}={forced!r}: expected a whole number of GPUs")
        return int(forced)
    import torch

    if not torch.backends.cuda.is_built():
        return 0
    count = torch.cuda._device_count_nvml()  # < 0: NVML failed; only then the runtime's count (not fork-safe)
    return count if count >= 0 else torch.cuda.device_count()


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


@contextmanager
def deterministic_mode(enabled: bool = True):
    """Inside: cuDNN's deterministic kernels without autotuning, torch's deterministic algorithms (an op with none
    raises) and cuBLAS's fixed workspace, so a seeded CUDA run repeats exactly; restored on exit (process-wide).
    enabled False: a no-op (the default: the deterministic kernels are slower)."""
    import torch

    if not enabled:
        yield
        return
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    # cuBLAS reads it when its handle is created: set before the first CUDA matmul of the process to take effect.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
        if saved[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


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


class WeightAverage:
    """EMA of a model's state: floating tensors ema = d * ema + (1 - d) * w in two fused multi-tensor kernels
    (torch._foreach_*: one launch for every tensor instead of two per tensor), other tensors copied."""

    def __init__(self, model):
        import torch

        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.live = model.state_dict()  # detached views of the model's own tensors: they follow its updates
        floating = [k for k, v in self.state.items() if v.dtype.is_floating_point]
        self.avg = [self.state[k] for k in floating]
        self.src = [self.live[k] for k in floating]
        self.copied = [(self.state[k], self.live[k]) for k in self.state if not self.state[k].dtype.is_floating_point]
        self._foreach = (torch._foreach_mul_, torch._foreach_add_)

    def update(self, decay: float) -> None:
        import torch

        mul, add = self._foreach
        with torch.no_grad():
            if self.avg:
                mul(self.avg, decay)
                add(self.avg, self.src, alpha=1.0 - decay)
            for dst, src in self.copied:
                dst.copy_(src)


class TrainingProgress:
    """An iteration bar on a terminal only (in a log file every refresh would be one more line) and the per-epoch
    callback on_epoch(epochs_done, epochs) that luigi's progress channel listens to."""

    def __init__(self, iterations: int, epochs: int, desc: str, show: bool = True, on_epoch=None):
        import sys

        from tqdm import tqdm

        self.bar = tqdm(total=iterations, desc=desc, disable=not (show and sys.stderr.isatty()), leave=False)
        self.epochs, self.on_epoch = epochs, on_epoch

    def iteration(self, loss: float | None = None) -> None:
        """One iteration; loss: the latest loss read on the host (None: none new, the bar keeps the last one)."""
        self.bar.update(1)
        if loss is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def epoch(self, epoch: int) -> None:
        if self.on_epoch is not None:
            self.on_epoch(epoch + 1, self.epochs)

    def close(self) -> None:
        self.bar.close()
