"""Banded local attention (models/actionformer/banded.py) against today's full masked attention: the same to
1e-6 in float32 (1e-12 in float64), outputs and gradients, with padding masks, odd lengths and blocks that do not
divide the length; and ActionFormer's attention and whole model through either path."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tal_pipeline.models.actionformer import attention
from tal_pipeline.models.actionformer.attention import LocalConvAttention, local_attention_mask
from tal_pipeline.models.actionformer.banded import banded_attention
from tal_pipeline.models.actionformer.model import ActionFormer


def _qkv_mask(t: int, lengths: list[int], dtype=torch.float32, heads: int = 2, e: int = 8):
    g = torch.Generator().manual_seed(t)
    q, k, v = (torch.randn(len(lengths), heads, t, e, generator=g, dtype=dtype, requires_grad=True)
               for _ in range(3))
    mask = torch.arange(t)[None] < torch.tensor(lengths)[:, None]  # (B, T)
    return q, k, v, mask


@pytest.mark.parametrize(("t", "lengths", "window", "block"), [
    (37, [37, 20, 1], 19, 16),   # odd length, padded videos, one of a single real step
    (5, [5, 3], 19, 32),         # shorter than the window and than one block
    (101, [101, 64], 9, 7),      # a block smaller than the window, not dividing T
    (257, [257, 130, 2], 19, 32),
    (64, [64, 33], 4, 32),       # even window: half-width 2, as local_attention_mask
    (50, [50, 50], 1, 8),        # window 1: each query attends itself only
])
def test_banded_equals_masked_sdpa(t, lengths, window, block):
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        q, k, v, mask = _qkv_mask(t, lengths, dtype)
        full = F.scaled_dot_product_attention(q, k, v, attn_mask=local_attention_mask(mask, window))
        grads_full = torch.autograd.grad((full * torch.cos(full)).sum(), (q, k, v))
        band = banded_attention(q, k, v, mask, window, block)
        grads_band = torch.autograd.grad((band * torch.cos(band)).sum(), (q, k, v))
        assert band.shape == full.shape
        torch.testing.assert_close(band, full, rtol=0, atol=tol)
        scale = max(1.0, *(float(g.abs().max()) for g in grads_full))  # gradients: 1e-6 of the largest one
        for gb, gf in zip(grads_band, grads_full):
            torch.testing.assert_close(gb, gf, rtol=0, atol=tol * scale)


def test_banded_attention_is_local():
    """A key outside every query's window changes nothing; one inside does."""
    q, k, v, mask = _qkv_mask(80, [80])
    base = banded_attention(q, k, v, mask, 9, 16).detach()
    v2 = v.detach().clone()
    v2[:, :, 40] += 10.0
    moved = (banded_attention(q, k, v2, mask, 9, 16).detach() - base).abs().amax(dim=(0, 1, 3))  # (T,)
    assert torch.all(moved[36:45] > 0) and torch.all(moved[:36] == 0) and torch.all(moved[45:] == 0)


@pytest.mark.parametrize("stride", [1, 2])
def test_local_conv_attention_same_through_either_path(monkeypatch, stride):
    torch.manual_seed(0)
    layer = LocalConvAttention(width=16, heads=4, window=19, stride=stride).eval()
    x = torch.randn(3, 16, 301)
    mask = torch.arange(301)[None] < torch.tensor([301, 177, 9])[:, None]
    x = x * mask[:, None]
    monkeypatch.setattr(attention, "BANDED_MIN_LENGTH", 10**9)  # today's masked form
    full, m_full = layer(x, mask)
    monkeypatch.setattr(attention, "BANDED_MIN_LENGTH", 1)
    band, m_band = layer(x, mask)
    assert torch.equal(m_full, m_band)
    torch.testing.assert_close(band, full, rtol=0, atol=1e-6)


def test_actionformer_forward_and_loss_same_through_either_path(monkeypatch):
    """The whole model at a length where its first levels take the banded path and its last the masked one."""
    torch.manual_seed(0)
    model = ActionFormer(in_channels=8, num_classes=3, width=32, levels=4, window=19).eval()
    x = torch.randn(2, 8, 515)
    mask = torch.arange(515)[None] < torch.tensor([515, 300])[:, None]
    x = x * mask[:, None]
    targets = [{"segments": torch.tensor([[10.0, 60.0], [200.0, 320.0]]), "labels": torch.tensor([0, 2])},
               {"segments": torch.tensor([[30.0, 90.0]]), "labels": torch.tensor([1])}]
    monkeypatch.setattr(attention, "BANDED_MIN_LENGTH", 10**9)
    out_full = model(x, mask)
    loss_full = model.loss(out_full, targets)["total"]
    monkeypatch.setattr(attention, "BANDED_MIN_LENGTH", 256)  # levels of 515 and 258 steps banded
    out_band = model(x, mask)
    loss_band = model.loss(out_band, targets)["total"]
    for key in ("logits", "dists"):
        torch.testing.assert_close(out_band[key], out_full[key], rtol=0, atol=1e-5)
    torch.testing.assert_close(loss_band, loss_full, rtol=1e-6, atol=0)
