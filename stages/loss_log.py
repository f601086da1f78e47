"""Training-log rows whose loss terms stay on the device until they are read: one device-to-host copy every
`every` steps instead of one `float()` (a device sync) per loss term and step, and the non-finite check on the
copied values, naming the first step whose total is not finite.

The rows: one dict per logged step, its fixed fields (epoch, iteration, lr, ...) then its loss terms as Python
floats, in the order given. The log also moves the progress bar and hands the rows to on_log at every epoch's end,
the bookkeeping the encoder's and the detectors' loops share.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

# Steps between copies: a sync every 25 steps costs little, and a NaN is reported at most that many steps late.
LOG_EVERY = 25


class LossLog:
    """rows: the list the rows are appended to (the caller's). check: the term whose non-finite value stops training
    (FloatingPointError naming `what`, the epoch and iteration of its first such step, and every term's value); the
    bar shows its latest copied value. bar: a stages.runtime.TrainingProgress (None: no bar); on_log(rows): called
    at every epoch's end with the rows so far (live logs; None: not called)."""

    def __init__(self, rows: list[dict], what: str, check: str = "total", every: int = LOG_EVERY, bar=None,
                 on_log=None):
        self.rows, self.what, self.check, self.every = rows, what, check, max(int(every), 1)
        self.bar, self.on_log = bar, on_log
        self.pending: list[tuple[dict, dict]] = []  # (fixed fields, {term: 0-dim tensor}) not yet copied

    def add(self, fields: Mapping, terms: Mapping) -> None:
        """One step: fields (plain values) and terms (0-dim tensors, or floats); copied out every `every` steps."""
        import torch

        self.pending.append((dict(fields), {k: v.detach() if torch.is_tensor(v) else v for k, v in terms.items()}))
        if len(self.pending) >= self.every:
            self.flush()
        if self.bar is not None:
            self.bar.iteration(None if self.pending else self.last(self.check))

    def flush(self) -> None:
        """Copy every pending term to the host at once (one sync), append the rows, then check them."""
        import torch

        if not self.pending:
            return
        tensors = [v for _, terms in self.pending for v in terms.values() if torch.is_tensor(v)]
        # float64 holds a float32/bf16 value exactly, as float() did; one stack, one copy.
        flat = torch.stack([t.to(torch.float64).reshape(()) for t in tensors]).cpu().tolist() if tensors else []
        values = iter(flat)
        pending, self.pending = self.pending, []
        for fields, terms in pending:
            row = {**fields, **{k: (next(values) if torch.is_tensor(v) else float(v)) for k, v in terms.items()}}
            self.rows.append(row)
        for row in self.rows[-len(pending):]:
            if self.check in row and not math.isfinite(row[self.check]):
                terms = {k: v for k, v in row.items() if k not in ("epoch", "iteration", "lr")}
                raise FloatingPointError(f"{self.what}: non-finite loss at epoch {row['epoch']}, iteration "
                                         f"{row['iteration']}: {terms}")

    def epoch_done(self, epoch: int) -> None:
        """At an epoch's end: the bar's epoch callback, then every row so far to on_log (what is pending copied)."""
        if self.bar is not None:
            self.bar.epoch(epoch)
        if self.on_log is not None:
            self.flush()
            self.on_log(self.rows)

    def last(self, key: str) -> float | None:
        """The latest copied value of `key` (for a progress bar), or None before the first copy."""
        return self.rows[-1].get(key) if self.rows else None
