"""The numeric precision of a training or inference run: "fp32" (the default) or "bf16" (the forward pass under
torch.autocast with bfloat16; targets, losses, NMS and coordinates stay in float32).

The setting is recorded with the run (the detector's training settings, the encoder's config) and shapes the
artifact hash of the stage that trains with it.
"""
from __future__ import annotations

from typing import Any

PRECISIONS = ("fp32", "bf16")
DEFAULT_PRECISION = "fp32"


def check_precision(value: Any, what: str) -> str:
    """value if it is one of PRECISIONS, else ValueError naming `what` (the detector, the encoder)."""
    if value not in PRECISIONS:
        raise ValueError(f"{what}: precision must be one of {list(PRECISIONS)}, got {value!r}")
    return value


def autocast(device, precision: str):
    """The context a forward pass runs in: torch.autocast to bfloat16 on `device` (a torch.device) for bf16, a
    disabled one for fp32 (fp32 runs exactly as with no autocast at all)."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=check_precision(precision, "run") == "bf16")


def as_fp32(tree):
    """Every floating tensor of lower precision in a nested dict / list / tuple of outputs -> float32 (other leaves
    as they are): what a loss or a decoder reads after an autocast forward pass."""
    import torch

    if torch.is_tensor(tree):
        return tree.float() if tree.is_floating_point() and tree.dtype != torch.float64 else tree
    if isinstance(tree, dict):
        return {k: as_fp32(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(as_fp32(v) for v in tree)
    return tree
