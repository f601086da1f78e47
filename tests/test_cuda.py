"""The CUDA checks (benchmarks/gpu_checks.py) under pytest, on the GPU: skipped where torch sees none (the CPU
dry run of benchmarks/gpu_smoke.py runs them on the CPU in tests/test_gpu_smoke.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_checks  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("check", gpu_checks.CHECKS, ids=lambda c: c.__name__)
def test_cuda_check(check):
    check(torch.device("cuda"))
