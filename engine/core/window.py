"""The open accumulation window: how many micro-batches it holds and the weight each one gets.

Torch-free. Exact accumulation (DESIGN.md): each micro-batch's mean loss is scaled by its share of
the window's samples (or of a job's own counts), `weight / expected`; where the window ends up
holding other counts than expected, the loop rescales the summed gradients by `correction()`.
"""

from __future__ import annotations

from typing import Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.arithmetic import whole_number_error, window_samples, window_size_at


class AccumulationWindow:
    """Accumulation steps `k` (with a requested change waiting for the next window start) and the open window.

    State (`state_dict`): `accum`, `pending` (requested accumulation steps or `None`), `size`
    (micro-batches the open window holds, short at the end of an epoch), `expected` (its planned
    weight: samples, or the job's counts) and `weight` (what its micro-batches brought so far).
    """

    def __init__(self, accum: int) -> None:
        self.accum = accum
        self.pending: Optional[int] = None
        self.size = 1
        self.expected = 1.0
        self.weight = 0.0

    @property
    def next_accum(self) -> int:
        """The accumulation steps of the next window: a pending change, else the current ones."""
        return self.pending or self.accum

    def request(self, k: object) -> Optional[str]:
        """Ask for `k` accumulation steps from the next window start: `None` when accepted (asking for the
        current `k` again cancels a pending change), else the reason it is refused."""
        error = whole_number_error("accumulation steps", k)
        if error is not None:
            return error
        if k == self.accum and self.pending is None:
            return f"accumulation steps are already {k}"
        self.pending = None if k == self.accum else k
        return None

    def apply_pending(self) -> Optional[tuple[int, int]]:
        """At a window start: take a pending change; `(old, new)` when there was one."""
        if self.pending is None:
            return None
        old, self.accum, self.pending = self.accum, self.pending, None
        return old, self.accum

    def open(self, i: int, n: Optional[int], samples: Optional[int], batch_size: int, drop_last: bool,
             exact: bool) -> None:
        """Open a window at 0-based iteration `i` of an epoch of `n` iterations (`None`: unknown).

        `exact`: the weights are sample counts and the length is known, so the window's samples are
        known now and each micro-batch gets its exact share; otherwise `size · b` is a guess that
        `correction()` makes exact at the step.
        """
        self.size = window_size_at(i, n, self.accum)
        if exact and n is not None:
            self.expected = float(window_samples(i, self.size, samples, batch_size, drop_last))
        else:
            self.expected = float(self.size * batch_size)
        self.weight = 0.0

    def correction(self) -> Optional[float]:
        """Factor for the summed gradients at the step, `expected / weight`, when the window held other
        counts than planned (unknown length, a job's own counts); `None` when none is needed."""
        if self.weight > 0 and self.weight != self.expected:
            return self.expected / self.weight
        return None

    def close(self) -> None:
        """The window was stepped (or an epoch starts): nothing is accumulated."""
        self.weight = 0.0

    def pending_change(self) -> Optional[msg.PendingChange]:
        if self.pending is None:
            return None
        return msg.PendingChange("accumulation steps", self.accum, self.pending, "the next window")

    def state_dict(self) -> dict:
        return {"accum": self.accum, "pending": self.pending, "size": self.size, "expected": self.expected,
                "weight": self.weight}

    def load_state_dict(self, state: dict) -> None:
        self.accum, self.pending, self.size = state["accum"], state["pending"], state["size"]
        self.expected, self.weight = state["expected"], state["weight"]
