"""Exact epoch, iteration, window and optimizer-step arithmetic, with no torch import.

Every number trainmon shows about *where a run stands* comes from here, so it can be tested by
tables (tests/test_arithmetic.py) and reused by `trainmon plan`. Terms follow DESIGN.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from trainmon.engine.core.format import general


class PlanError(ValueError):
    """Invalid plan input (batch size < 1, accum < 1, samples < 0, ...); the message is one line."""


MAX_BATCH_SIZE = 2**31 - 1  # largest batch size (and schedule cap) accepted anywhere
MAX_SAMPLES = 2**53  # largest sample count accepted: beyond it floats no longer count every sample
WINDOW_LIST_LIMIT = 10_000  # `EpochPlan.window_sizes` is None beyond this many windows


# --------------------------------------------------------------------------------------------
# One epoch
# --------------------------------------------------------------------------------------------


def is_whole(value: object, minimum: int = 1) -> bool:
    """True for an int (never a bool) >= `minimum`: the one test for counts, sizes and seeds."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def whole_number_error(name: str, value: object, minimum: int = 1) -> Optional[str]:
    """`"{name} must be a whole number >= {minimum}, got {value!r}"`, or `None` when `is_whole`."""
    return None if is_whole(value, minimum) else f"{name} must be a whole number >= {minimum}, got {value!r}"


def check_whole(name: str, value: object, minimum: int = 1) -> None:
    """Raise `PlanError` with `whole_number_error`'s line unless `value` is a whole number >= `minimum`."""
    error = whole_number_error(name, value, minimum)
    if error is not None:
        raise PlanError(error)


def check_positive(name: str, value: int) -> None:
    """Raise `PlanError` unless `value` is an int >= 1 (booleans are refused)."""
    check_whole(name, value, 1)


def batch_size_error(name: str, value: object) -> Optional[str]:
    """Why `value` is no batch size (not a whole number, or above `MAX_BATCH_SIZE`); `None` when it is one."""
    error = whole_number_error(name, value, 1)
    if error is None and value > MAX_BATCH_SIZE:
        error = f"{name} must be at most {MAX_BATCH_SIZE}, got {value}"
    return error


def check_batch_size(name: str, value: int) -> None:
    """Raise `PlanError` unless `value` is an int from 1 to `MAX_BATCH_SIZE` (2**31 - 1) samples."""
    error = batch_size_error(name, value)
    if error is not None:
        raise PlanError(error)


def check_samples(samples: Optional[int]) -> None:
    """Raise `PlanError` unless `samples` is `None` (unknown) or an int from 0 to `MAX_SAMPLES` (2**53)."""
    if samples is None:
        return
    if not is_whole(samples, 0):
        raise PlanError(f"samples must be >= 0, got {samples!r}")
    if samples > MAX_SAMPLES:
        raise PlanError(f"samples must be at most {MAX_SAMPLES}, got {samples}")


def iterations_per_epoch(samples: Optional[int], batch_size: int, drop_last: bool = False) -> Optional[int]:
    """Iterations (batches) the data loader yields in one epoch.

    `ceil(m / b)`, or `floor(m / b)` with `drop_last`. `samples=None` (a dataset without
    `__len__`) gives `None`. Raises `PlanError` for a batch size outside 1..`MAX_BATCH_SIZE` or
    samples outside 0..`MAX_SAMPLES`.
    """
    check_batch_size("batch size", batch_size)
    check_samples(samples)
    if samples is None:
        return None
    return samples // batch_size if drop_last else -(-samples // batch_size)


def last_batch_size(samples: Optional[int], batch_size: int, drop_last: bool = False) -> Optional[int]:
    """Samples in the epoch's last batch: `m - (n-1)·b`, or `b` with `drop_last`; 0 when the epoch is empty."""
    n = iterations_per_epoch(samples, batch_size, drop_last)
    if n is None:
        return None
    if n == 0:
        return 0
    return batch_size if drop_last else samples - (n - 1) * batch_size


def batch_size_at(iteration: int, samples: Optional[int], batch_size: int, drop_last: bool = False) -> int:
    """Samples in batch `iteration` (0-based) of an epoch; `batch_size` when the length is unknown."""
    n = iterations_per_epoch(samples, batch_size, drop_last)
    if n is not None and iteration == n - 1:
        return last_batch_size(samples, batch_size, drop_last)
    return batch_size


def epoch_samples(samples: Optional[int], batch_size: int, drop_last: bool = False) -> Optional[int]:
    """Samples consumed in one epoch: `m`, or `floor(m/b)·b` with `drop_last`."""
    n = iterations_per_epoch(samples, batch_size, drop_last)
    if n is None:
        return None
    return n * batch_size if drop_last else samples


def window_samples(start: int, size: int, samples: Optional[int], batch_size: int, drop_last: bool = False) -> int:
    """Samples in the `size` batches from 0-based iteration `start` on: `size · b`, less the short last
    batch's shortfall when the window holds it; `size · b` when the length is unknown."""
    total = size * batch_size
    n = iterations_per_epoch(samples, batch_size, drop_last)
    if n is not None and size > 0 and start <= n - 1 < start + size:
        total += batch_size_at(n - 1, samples, batch_size, drop_last) - batch_size
    return total


def epoch_counts(samples: int, batch_size: int, accum: int, drop_last: bool = False) -> tuple[int, int, int]:
    """`(iterations, optimizer steps, samples)` of one epoch of known length: `ceil(m/b)` (or floor with
    `drop_last`), `ceil(n/k)` and `m` (or `n·b` with `drop_last`). Raises `PlanError` like its parts."""
    n = iterations_per_epoch(samples, batch_size, drop_last) or 0
    return n, optimizer_steps_per_epoch(n, accum), epoch_samples(samples, batch_size, drop_last)


def steps_left(iterations_left: int, accum: int, open_window_left: Optional[int] = None) -> int:
    """Optimizer steps still to come in an epoch with `iterations_left` iterations to run.

    With a window open (`open_window_left` = micro-batches it still takes, possibly 0), that window
    keeps its size and gets one step; the iterations after it go in windows of `accum` (the last
    short one stepped too). Without one (`None`), every remaining iteration goes in windows of `accum`.
    """
    if open_window_left is None:
        return optimizer_steps_per_epoch(max(0, iterations_left), accum)
    return 1 + optimizer_steps_per_epoch(max(0, iterations_left - max(0, open_window_left)), accum)


def window_sizes(iterations: int, accum: int) -> list[int]:
    """Micro-batches in each accumulation window of an epoch of `iterations` iterations.

    The last window is shorter than `accum` when `accum` does not divide `iterations`; it still gets
    its own optimizer step (DESIGN.md: the short window is stepped). `accum` larger than the epoch
    gives one window. Raises `PlanError` for accum < 1.
    """
    check_positive("accumulation steps", accum)
    full, rest = divmod(iterations, accum)
    return [accum] * full + ([rest] if rest else [])


def window_counts(iterations: int, accum: int) -> tuple[int, int]:
    """`(full windows, size of the last window)` of an epoch, without listing every window.

    Full windows hold `accum` micro-batches; the last window's size is `accum` when all windows are
    full and 0 when the epoch has no iterations. Raises `PlanError` for accum < 1.
    """
    check_positive("accumulation steps", accum)
    full, rest = divmod(iterations, accum)
    return full, (rest if rest else (accum if full else 0))


def optimizer_steps_per_epoch(iterations: Optional[int], accum: int) -> Optional[int]:
    """`ceil(n / k)`: one step per (possibly short) window; `None` for an unknown length."""
    check_positive("accumulation steps", accum)
    if iterations is None:
        return None
    return -(-iterations // accum)


def micro_batch_weights(sizes: Sequence[float]) -> list[float]:
    """Weight of each micro-batch's mean loss in its window: `n_i / sum(n)`.

    Weighting by share of the window's samples makes the window's gradient equal to that of one
    batch of all its samples. `sizes` are sample counts (or a job's own counts, e.g. tokens).
    Raises `PlanError` when the sizes sum to zero or one is negative.
    """
    if any(s < 0 for s in sizes):
        raise PlanError(f"micro-batch sizes must be >= 0, got {list(sizes)}")
    total = float(sum(sizes))
    if total <= 0:
        raise PlanError("a window must hold at least one sample")
    return [s / total for s in sizes]


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> Optional[float]:
    """Weighted mean of the finite `values` (NaN/Inf and their weights are left out); `None` if none is finite."""
    num = den = 0.0
    for v, w in zip(values, weights):
        if math.isfinite(v):
            num += v * w
            den += w
    return num / den if den > 0 else None


def effective_batch_size(batch_size: int, accum: int, world_size: int = 1) -> int:
    """Samples behind one full-window update: `b · k · world_size`."""
    return batch_size * accum * world_size


def window_position(iteration: int, iterations: Optional[int], accum: int) -> tuple[int, int, int]:
    """Where 0-based `iteration` of an epoch sits: `(window index, position in window (0-based), window size)`.

    Only valid while `accum` stays constant over the epoch (the loop tracks windows itself when it
    changes). With an unknown epoch length every window is assumed full.
    """
    check_positive("accumulation steps", accum)
    index, pos = divmod(iteration, accum)
    return index, pos, window_size_at(index * accum, iterations, accum)


def window_size_at(start: int, iterations: Optional[int], accum: int) -> int:
    """Micro-batches in a window opening at 0-based iteration `start`: `accum`, or fewer when the epoch
    of `iterations` iterations ends first; `accum` when the length is unknown (`None`)."""
    return accum if iterations is None else min(accum, iterations - start)


# --------------------------------------------------------------------------------------------
# Batch-size schedule
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSizeSchedule:
    """`b_t = b_0 · g^t` for epoch index `t` (0-based), rounded down, at least 1, optionally capped.

    Constant when `growth == 1`. Raises `PlanError` on construction for b_0 or a cap outside
    1..`MAX_BATCH_SIZE`, a cap below b_0, or g not a finite number > 0; `at` raises `PlanError`
    when an uncapped `b_t` would exceed `MAX_BATCH_SIZE`.
    """

    initial: int
    growth: float = 1.0
    max_batch_size: Optional[int] = None

    def __post_init__(self) -> None:
        check_batch_size("batch size", self.initial)
        if not (isinstance(self.growth, (int, float)) and math.isfinite(self.growth) and self.growth > 0):
            raise PlanError(f"batch growth must be a number > 0, got {self.growth!r}")
        if self.max_batch_size is not None:
            check_batch_size("max batch size", self.max_batch_size)
            if self.max_batch_size < self.initial:
                raise PlanError(f"max batch size {self.max_batch_size} is below the batch size {self.initial}")

    def at(self, epoch_index: int) -> int:
        """Batch size (samples) of epoch `epoch_index` (0-based): `floor(b_0 · g^t)`, at least 1, capped.

        Exact for every `b_t` up to `MAX_BATCH_SIZE`; larger values are compared in log space, so
        no growth or epoch count overflows a float. Raises `PlanError` naming the first (1-based)
        epoch whose `b_t` exceeds `MAX_BATCH_SIZE` when no cap is set and `b_t` would exceed it.
        """
        b = self._uncapped(epoch_index)
        if self.max_batch_size is not None:
            return self.max_batch_size if b is None else min(b, self.max_batch_size)
        if b is None:
            lo, hi = 0, epoch_index  # b_t grows with t: find the first epoch index past the limit
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if self._uncapped(mid) is None else (mid + 1, hi)
            raise PlanError(
                f"batch growth {general(self.growth)} takes the batch size above {MAX_BATCH_SIZE} at epoch "
                f"{lo + 1} (from {self.initial}); cap it with --max-batch-size"
            )
        return b

    def constant_from(self, epoch_index: int) -> bool:
        """True when every epoch from `epoch_index` on runs at `at(epoch_index)`: no growth, a growing
        schedule at its cap, or a shrinking one down to 1."""
        if self.growth == 1:
            return True
        b = self.at(epoch_index)
        if self.growth > 1:
            return b == self.max_batch_size
        return b == 1

    def segments(self, first: int, epochs: int):
        """Runs of epochs at one batch size: `(epoch index, count, batch size)` for epoch indexes
        `first` .. `first + epochs - 1`, in order.

        Costs one step per *distinct* batch size, never one per epoch: 10**8 epochs at a constant
        batch size are one segment. Raises `PlanError` like `at`.
        """
        t, end = first, first + epochs
        while t < end:
            b = self.at(t)
            if self.constant_from(t):
                yield t, end - t, b
                return
            nxt = self._next_change(t, b, end)
            yield t, nxt - t, b
            t = nxt

    def _next_change(self, t: int, b: int, end: int) -> int:
        """The first epoch index after `t` whose batch size is not `b` (or `end`): a guess from
        logarithms, corrected by a step or two so float rounding never skips or repeats an epoch."""
        target = b + 1 if self.growth > 1 else b  # growing: reach b + 1; shrinking: fall below b
        try:
            x = math.log(target / self.initial) / math.log(self.growth)
            guess = max(t + 1, min(end, int(math.floor(x))))
        except (OverflowError, ValueError):
            guess = t + 1
        while guess > t + 1 and self.at(guess - 1) != b:
            guess -= 1
        while guess < end and self.at(guess) == b:
            guess += 1
        return guess

    def _uncapped(self, epoch_index: int) -> Optional[int]:
        """`max(1, floor(b_0 · g^t))`, or `None` when that exceeds `MAX_BATCH_SIZE`."""
        if self.growth == 1:
            return self.initial
        if self.growth > 1:
            try:
                log_b = math.log(self.initial) + epoch_index * math.log(self.growth)
            except OverflowError:  # an epoch index too large for a float
                return None
            if log_b > math.log(MAX_BATCH_SIZE) + 1:  # clearly too large: never form b_0 · g^t
                return None
        try:
            b = max(1, int(math.floor(self.initial * self.growth**epoch_index + 1e-9)))
        except OverflowError:  # g^t with an epoch index too large for a float
            return None if self.growth > 1 else 1
        return None if b > MAX_BATCH_SIZE else b
