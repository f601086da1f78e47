"""Boundary regions (AFSD eq. 3) and boundary max pooling (eq. 4), vectorised with a sparse table.

A range-max sparse table over time (levels up to the longest region) answers the max over any index range
[lo, hi] with two gathers, so all proposals x channels are pooled at once, with no loop over proposals and no
(B, K, T, C) mask. Pooling is a custom autograd Function: the table is built without autograd and yields, with
each max, the first step reaching it (float32/16/bf16 values and steps packed in one int64 key, so one
torch.maximum per level carries both); backward scatters each pooled gradient onto that step, as max pooling
does. Both passes cost a few passes over the feature instead of autograd through every table level.

Ties: when the maximum of a region is reached at several steps, the whole gradient goes to the FIRST of them
(lowest step). Autograd through torch.maximum (the implementation before this one, kept in
tests/reference_boundary_pooling.py) split it over the tied steps in halves set by the table's layout; both
are valid subgradients with the same sum per region. In AFSD the pooled features are ReLU outputs, where ties
happen at 0 and ReLU passes no gradient there, so the model's parameter gradients are the same.
"""
from __future__ import annotations

import math

import torch


def boundary_regions(start: torch.Tensor, end: torch.Tensor, delta_a: float = 4.0, delta_b: float = 10.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: start and end regions of proposals [start, end] (any shape S) -> two (*S, 2) tensors.

    T_s = [psi - w/delta_a, psi + w/delta_b], T_e = [xi - w/delta_b, xi + w/delta_a], w = xi - psi
    (the paper prints w = psi - xi, a sign typo: w is the proposal length).
    """
    w = (end - start).clamp(min=0)
    t_s = torch.stack([start - w / delta_a, start + w / delta_b], dim=-1)
    t_e = torch.stack([end - w / delta_b, end + w / delta_a], dim=-1)
    return t_s, t_e


def region_to_indices(regions: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous regions (B, K, 2) -> inclusive integer index ranges lo, hi (B, K) inside [0, length-1].

    Index j is pooled when floor(a) <= j <= ceil(b); a region wholly outside the valid steps
    collapses onto the nearest valid step, so every proposal pools at least one step.
    """
    last = (lengths.to(regions.device).long() - 1).clamp(min=0)[:, None]  # (B, 1)
    lo = torch.floor(regions[..., 0]).long()
    hi = torch.ceil(regions[..., 1]).long()
    lo = torch.minimum(lo.clamp(min=0), last)
    hi = torch.maximum(torch.minimum(hi.clamp(min=0), last), lo)
    return lo, hi


def _level_sizes(t: int, levels: int) -> list[int]:
    """Entries of each table level: level j holds the T - 2^j + 1 windows of 2^j steps that fit inside T."""
    return [t - (1 << j) + 1 for j in range(levels)]


def _fill_levels(table: torch.Tensor, t: int, levels: int) -> torch.Tensor:
    """table (B, C, N), N = sum of level sizes, with level 0 (x, T entries) at [..., :T] -> levels 1.. filled in place:
    level j, entry s (flat offset_j + s) = max(x[..., s : s + 2^j]). Only whole windows: a query stays inside T."""
    sizes = _level_sizes(t, levels)
    start = 0  # flat offset of the previous level
    for j in range(1, levels):
        half, n = 1 << (j - 1), sizes[j]
        end = start + sizes[j - 1]
        left, right = table[..., start:start + n], table[..., start + half:start + half + n]  # (B, C, n) each
        torch.maximum(left, right, out=table[..., end:end + n])  # one buffer: fresh tensors cost page faults on CPU
        start = end
    return table


def _value_table(feat: torch.Tensor, levels: int) -> torch.Tensor:
    """feat (B, C, T) -> range-max table of its values (B, C, N)."""
    b, c, t = feat.shape
    table = feat.new_empty(b, c, sum(_level_sizes(t, levels)))  # (B, C, N)
    table[..., :t] = feat
    return _fill_levels(table, t, levels)


def _value_argmax_tables(feat: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Any float dtype: _value_table of feat (B, C, T) and the first step reaching each max (B, C, N) int64.

    The fallback for dtypes _key_table cannot pack (float64): torch.where costs several torch.maximum on CPU.
    """
    b, c, t = feat.shape
    vals = _value_table(feat, levels)  # (B, C, N)
    sizes = _level_sizes(t, levels)
    idx = torch.empty(b, c, vals.shape[-1], dtype=torch.long, device=feat.device)  # (B, C, N)
    idx[..., :t] = torch.arange(t, device=feat.device)
    start = 0
    for j in range(1, levels):
        half, n = 1 << (j - 1), sizes[j]
        end = start + sizes[j - 1]
        # Strictly greater: on a tie the left window's (earlier) step is kept.
        take_right = vals[..., start + half:start + half + n] > vals[..., start:start + n]
        left, right = idx[..., start:start + n], idx[..., start + half:start + half + n]  # (B, C, n) each
        torch.where(take_right, right, left, out=idx[..., end:end + n])
        start = end
    return vals, idx


# Floats whose bits fit beside a 32-bit step in one int64 key; the signed integer of the same width views them.
_PACKABLE = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}
_TABLE_BYTES = 1 << 21  # table per block of channels on CPU: about a core's L2 cache


def _sign_flip(bits: torch.Tensor) -> torch.Tensor:
    """IEEE bits as signed integers (any shape) -> the mask whose XOR puts them in float order (its own inverse).

    Negative floats get their magnitude bits flipped (-0.0 sorts just below +0.0); torch's signed shifts are
    arithmetic (documented), so the mask needs no torch.where.
    """
    width = torch.iinfo(bits.dtype).bits
    flip = bits >> (width - 1)  # -1 where negative, else 0
    return flip.bitwise_and_((1 << (width - 1)) - 1)


def _key_table(feat: torch.Tensor, levels: int) -> torch.Tensor:
    """feat (B, C, T) float32/16/bf16 without sign-bit NaNs -> range-max table (B, C, N) of int64 keys (value, -step):
    a key's high 32 bits are the value's bits in float order, its low 32 bits T - 1 - step, so one torch.maximum
    gives the max and, on a tie, the first step reaching it."""
    b, c, t = feat.shape
    table = torch.empty(b, c, sum(_level_sizes(t, levels)), dtype=torch.long, device=feat.device)  # (B, C, N)
    bits = feat.contiguous().view(_PACKABLE[feat.dtype])  # (B, C, T)
    base = table[..., :t].copy_(bits)  # (B, C, T) sign-extended to int64, in the table (no extra buffer)
    base ^= _sign_flip(bits)  # flipping the low bits of the sign-extended value orders it as the float
    base <<= 32
    base += t - 1 - torch.arange(t, device=feat.device)
    return _fill_levels(table, t, levels)


def _decode(keys: torch.Tensor, dtype: torch.dtype, t: int, values: torch.Tensor, steps: torch.Tensor) -> None:
    """Keys of _key_table (any shape) -> values (dtype) and steps (int64) written into the given tensors, same shape;
    keys are overwritten."""
    ordered = (keys >> 32).to(_PACKABLE[dtype])  # arithmetic shift: the signed high part
    values.copy_(ordered.bitwise_xor_(_sign_flip(ordered)).view(dtype))
    steps.copy_(keys.bitwise_and_(0xFFFFFFFF).neg_().add_(t - 1))  # T - 1 - low part


def _reads_cheaply(feat: torch.Tensor) -> bool:
    """Whether reading a value of feat's device on the host is cheap: on CPU; on a GPU it is a sync, so none."""
    return feat.device.type == "cpu"


def _query(feat: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, with_argmax: bool, packed: bool = True
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Max of feat (B, C, T) over steps lo..hi (B, K) -> values (B, C, K) and first argmax steps (B, C, K) int64
    (None unless with_argmax). packed=False forces the torch.where table (the fallback, for tests)."""
    b, c, t = feat.shape
    k = lo.shape[1]
    n = hi - lo + 1  # (B, K) region sizes >= 1
    on_cpu = _reads_cheaply(feat)
    # Levels past the longest region are never read: skipped on CPU; on a GPU all are built (no host sync).
    longest = (int(n.max()) if n.numel() else 1) if on_cpu else t
    levels = int(math.floor(math.log2(max(min(longest, t), 1)))) + 1
    level = torch.floor(torch.log2(n.to(torch.float32))).long().clamp(max=levels - 1)  # (B, K)
    sizes = _level_sizes(t, levels)
    base = level * (t + 1) - (1 << level) + 1  # (B, K) flat level starts: sum of sizes[:level], no host copy
    pos_a = (base + lo)[:, None, :].expand(b, c, k)  # (B, C, K): window of 2^level steps from lo
    pos_b = (base + hi - (1 << level) + 1)[:, None, :].expand(b, c, k)  # (B, C, K): the one ending at hi
    if with_argmax and not (packed and feat.dtype in _PACKABLE):
        vals, idx = _value_argmax_tables(feat, levels)  # (B, C, N) each
        va, vb = torch.gather(vals, 2, pos_a), torch.gather(vals, 2, pos_b)  # (B, C, K) each
        # Strictly greater: on a tie window a holds the earlier first maximum (b starts inside or after it).
        arg = torch.where(vb > va, torch.gather(idx, 2, pos_b), torch.gather(idx, 2, pos_a))  # (B, C, K)
        return torch.maximum(va, vb), arg
    if with_argmax and (not on_cpu or torch.isnan(feat).any()):  # on a GPU one pass always: no host sync
        # A NaN with its sign bit set (x86's inf - inf) would sort lowest as a key; sign-less, it sorts above
        # +inf and wins, as NaN does in torch.maximum.
        feat = torch.where(torch.isnan(feat), feat.abs(), feat)
    values = feat.new_empty(b, c, k)  # (B, C, K)
    steps = torch.empty(b, c, k, dtype=torch.long, device=feat.device) if with_argmax else None  # (B, C, K)
    entry = 8 if with_argmax else feat.element_size()  # bytes per table entry
    # On CPU, channels in blocks whose table fits about a core's L2 (a big fresh buffer also costs page faults);
    # elsewhere one block (a caching allocator reuses memory, and every block is more kernel launches).
    block = max(1, _TABLE_BYTES // (entry * b * sum(sizes))) if feat.device.type == "cpu" else c
    for c0 in range(0, c, block):
        part = feat[:, c0:c0 + block]  # (B, c', T)
        cb = part.shape[1]
        if with_argmax:
            table = _key_table(part, levels)  # (B, c', N) int64 keys
            ka = torch.gather(table, 2, pos_a[:, :cb])  # (B, c', K)
            torch.maximum(ka, torch.gather(table, 2, pos_b[:, :cb]), out=ka)
            _decode(ka, feat.dtype, t, values[:, c0:c0 + cb], steps[:, c0:c0 + cb])
        else:
            table = _value_table(part, levels)  # (B, c', N)
            out = values[:, c0:c0 + cb]  # (B, c', K)
            torch.maximum(torch.gather(table, 2, pos_a[:, :cb]), torch.gather(table, 2, pos_b[:, :cb]), out=out)
    return values, steps


class _BoundaryMaxPool(torch.autograd.Function):
    """Range max with a saved argmax: forward (B, C, T) -> (B, C, K); backward scatters onto the argmax steps."""

    @staticmethod
    def forward(ctx, feat: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        pooled, arg = _query(feat, lo, hi, with_argmax=True)
        ctx.save_for_backward(arg)
        ctx.feat_shape = feat.shape
        return pooled

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (arg,) = ctx.saved_tensors  # (B, C, K) int64
        # Recorded by autograd when create_graph is set (grad enters as src), so double backward works too.
        return grad.new_zeros(ctx.feat_shape).scatter_add_(2, arg, grad), None, None  # (B, C, T)


def boundary_max_pool(feat: torch.Tensor, regions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Eq. 4: per proposal k and channel i, max of feat over the steps of region k.

    feat (B, C, T); regions (B, K, 2) in this feature's step units; lengths (B,) valid steps.
    Returns (B, C, K). The gradient of each output goes to the first step where its maximum is reached.
    """
    lo, hi = region_to_indices(regions, lengths)  # (B, K) each
    if torch.is_grad_enabled() and feat.requires_grad:
        return _BoundaryMaxPool.apply(feat, lo, hi)
    return _query(feat, lo, hi, with_argmax=False)[0]  # no argmax table when nothing will call backward


def num_table_levels(t: int) -> int:
    """Levels of the sparse table for T steps (for memory estimates; fewer are built when regions are shorter)."""
    return int(math.floor(math.log2(max(t, 1)))) + 1
