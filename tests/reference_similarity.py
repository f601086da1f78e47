"""Test-only cosine similarity (BAPG eq. 2), straight from the definition: the yardsticks the similarity stage
(stages/bapg/similarity.py, the pipeline's one cosine similarity) and the encoder's unit embeddings are checked
against, and the float64 matrices the TSC tests and benchmark segment. Not used by the pipeline."""
from __future__ import annotations

import numpy as np
import torch


def cosine_similarity_matrix(x: np.ndarray) -> np.ndarray:
    """S = cosine similarity of the rows of x: (T, D) -> (T, T) float64 (zero rows give 0 similarity)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)  # (T, 1)
    xn = x / np.where(norm > 0, norm, 1.0)
    return xn @ xn.T


def cosine_similarity_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 2, row by row: a (N, D), b (N, D) -> (N,)."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=eps)
