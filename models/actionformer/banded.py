"""Banded local attention at linear cost: the same attention as a full T x T SDPA under
local_attention_mask, computed block by block.

Queries are cut into blocks of `block` steps; block n attends only the keys [n*block - r, (n+1)*block + r),
r = window // 2 (its "halo"), under the same band / real-key / self mask restricted to that span. Every key a
query may attend lies in its block's span, and every other key has probability exactly 0 in the full form too,
so the two agree to rounding (tests/test_banded_attention.py: 1e-6). Cost per query: block + 2r keys instead
of T, so O(T) in time and memory. One SDPA call over all blocks; its inputs are 5-D, which on a GPU means SDPA's
math kernel (not yet measured on one), whose scores (B, H, T / block, block, block + 2r) are linear in T too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Query steps per block: the fastest overall at window 19 on CPU (docs/method.md §8); a block much larger than the
# window wastes the band's outside.
DEFAULT_BLOCK = 32


def _blocks(x: torch.Tensor, block: int, halo: int, nb: int, fill) -> torch.Tensor:
    """(..., T, *) -> (..., nb, block + 2 * halo, *): overlapping spans [n*block - halo, (n+1)*block + halo)."""
    t = x.shape[-2] if x.dim() > 2 else x.shape[-1]
    pad_back = nb * block + halo - t
    if x.dim() > 2:  # (B, H, T, E): pad the time axis (second to last)
        xp = F.pad(x, (0, 0, halo, pad_back), value=fill)
        return xp.unfold(-2, block + 2 * halo, block).transpose(-1, -2)  # (B, H, nb, S, E)
    xp = F.pad(x, (halo, pad_back), value=fill)  # (B, T) mask
    return xp.unfold(-1, block + 2 * halo, block)  # (B, nb, S)


def banded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, window: int,
                     block: int = DEFAULT_BLOCK, dropout_p: float = 0.0) -> torch.Tensor:
    """q, k, v: (B, H, T, E); mask: (B, T) bool, True on real keys -> (B, H, T, E).

    Query i attends key j when |i - j| <= window // 2 and (j is real or j == i): local_attention_mask's rule.
    """
    b, h, t, e = q.shape
    r = window // 2
    nb = -(-t // block)  # ceil
    qb = F.pad(q, (0, 0, 0, nb * block - t)).view(b, h, nb, block, e)  # (B, H, nb, block, E)
    kb, vb = _blocks(k, block, r, nb, 0.0), _blocks(v, block, r, nb, 0.0)  # (B, H, nb, S, E), S = block + 2r
    real = _blocks(mask, block, r, nb, False)  # (B, nb, S): real keys of each span (outside [0, T): False)
    # Query a of a block and key s of its span: offset s - r - a; in the band when |s - r - a| <= r.
    a = torch.arange(block, device=q.device)[:, None]
    s = torch.arange(block + 2 * r, device=q.device)[None, :]
    band = (s - r - a).abs() <= r  # (block, S)
    eye = s - r == a  # (block, S): the query itself
    allowed = (band & real[:, :, None, :]) | eye  # (B, nb, block, S)
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=allowed[:, None], dropout_p=dropout_p)
    return out.reshape(b, h, nb * block, e)[:, :, :t]  # (B, H, T, E)
