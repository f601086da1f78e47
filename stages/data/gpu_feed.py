"""I3D feature extraction's precision setting and what it does on a GPU: cuDNN settings, a batch size from free
memory, and fixed batch shapes for cuDNN's autotuner. Pure helpers; stages.data.features uses them."""
from __future__ import annotations

import contextlib

import torch

# fp32: full precision on every device (TF32 off on a GPU); bf16 / fp16: autocast to that dtype, for speed on a
# GPU (fp16 has 3 more mantissa bits than bf16 and I3D's eval-mode activations stay far from its range limit,
# so fp16 is the closer of the two to fp32 where a card has both).
PRECISIONS = ("fp32", "bf16", "fp16")
COMPUTE_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# Peak working memory of a forward pass, per input element, in units of the compute dtype's size: measured ~7-8x
# on CPU (fp32, peak RSS at 112 and 224 px); 12x leaves room for cuDNN's workspaces and the float32 input temp.
ACTIVATION_FACTOR = 12
MEMORY_SHARE = 0.5  # of the GPU's free memory, for one batch
MAX_GPU_BATCH = 256  # windows; a longer batch gains nothing on throughput and buffers more frames
# Batch sizes a GPU sees are multiples of this (the last batch of a video padded), so cuDNN autotunes a few shapes.
GPU_BATCH_MULTIPLE = 8


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"I3D precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision


def gpu_batch_size(device: torch.device, frame_shape, window: int, precision: str,
                   free_bytes: int | None = None) -> int:
    """Windows per forward pass that fit MEMORY_SHARE of the GPU's free memory (free_bytes: given, or asked of
    the device), a multiple of GPU_BATCH_MULTIPLE when more than one, at most MAX_GPU_BATCH."""
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    dtype = COMPUTE_DTYPES[check_precision(precision)] or torch.float32
    h, w = int(frame_shape[0]), int(frame_shape[1])
    per_window = ACTIVATION_FACTOR * 3 * window * h * w * dtype.itemsize
    n = min(MAX_GPU_BATCH, int(free_bytes * MEMORY_SHARE) // per_window)
    return max(1, n - n % GPU_BATCH_MULTIPLE if n >= GPU_BATCH_MULTIPLE else n)


def pad_batch(x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(n, ...) -> (m, ...), zero windows appended so m is the next multiple of GPU_BATCH_MULTIPLE (at most
    batch_size): every window is computed alone (eval-mode BatchNorm), so the first n outputs do not change."""
    n = x.shape[0]
    m = min(max(batch_size, n), -(-n // GPU_BATCH_MULTIPLE) * GPU_BATCH_MULTIPLE)
    if m == n:
        return x
    return torch.cat([x, x.new_zeros((m - n, *x.shape[1:]))]).contiguous(memory_format=torch.channels_last_3d)


@contextlib.contextmanager
def cuda_settings(device: torch.device, precision: str):
    """On a GPU, for the block: cuDNN autotuning (unless deterministic algorithms were asked for) and, at fp32,
    no TF32 (its 10-bit mantissa would make "fp32" GPU features differ from the CPU's more than rounding does).
    The previous settings come back afterwards (they are process-wide)."""
    if device.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.benchmark = not (cudnn.deterministic or torch.are_deterministic_algorithms_enabled())
    if precision == "fp32":
        cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = before
