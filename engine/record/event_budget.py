"""What keeps the event log within its daily bytes: a token bucket of stored bytes and the folding of
routine events into one `EventsSummarized` record while the bucket is empty. No torch, no textual.

Routine events are those a fast job makes on its own, at its own rate: epoch starts and ends,
checkpoints saved at an epoch's end or on the timer, non-finite losses. Everything else (a change,
a pause, a warning, a manual save, a resume, the end) is written whole, at once, and first writes
what was folded before it, so the log stays in order.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from trainmon.engine.core import messages as msg

DAY = 86400.0
RATE_SHARE, BURST_SHARE = 0.90, 0.06  # of the daily bytes; the rest is one live (plain) segment
FIRST_RATIO = 0.25  # stored/plain bytes assumed until a segment has been compressed (gzip: ~0.1)
ROUTINE_CHECKPOINTS = ("epoch end", "timer")
RAW_AT_MOST = 3
HOLD_SECONDS = 30.0  # folded events wait at most this long for an epoch end to be written with


class ByteBudget:
    """A token bucket of stored bytes: `daily_bytes × RATE_SHARE` a day refill it, it holds at most
    `daily_bytes × BURST_SHARE`; each written line costs its plain length × the compression ratio
    (learned from each compressed segment). `clock` gives seconds."""

    def __init__(self, daily_bytes: float, clock: Callable[[], float]) -> None:
        self.rate = daily_bytes * RATE_SHARE / DAY
        self.capacity = daily_bytes * BURST_SHARE
        self.clock = clock
        self.tokens = self.capacity
        self.ratio = FIRST_RATIO
        self._at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def spent(self) -> bool:
        """True while the bucket is empty: routine events are folded, not written."""
        self._refill()
        return self.tokens < 0

    def pay(self, plain_bytes: int) -> None:
        self._refill()
        self.tokens -= plain_bytes * self.ratio

    def learn(self, plain_bytes: int, stored_bytes: int) -> None:
        """A segment of `plain_bytes` was compressed to `stored_bytes`: later lines cost that ratio."""
        if plain_bytes > 0:
            self.ratio = max(0.03, min(1.0, stored_bytes / plain_bytes))


class Pending:
    """What has been folded since the last write."""

    def __init__(self, first_seq: int, since: float) -> None:
        self.first_seq = self.last_seq = first_seq
        self.since = since  # clock reading of the first fold
        self.few: list[tuple[int, Any]] = []  # the first RAW_AT_MOST folded, whole: so few are written as they came
        self.runs: list[msg.EpochRun] = []
        self.open_start: Optional[tuple[msg.EpochStarted, int]] = None  # folded start, steps before it
        self.last_epoch: Optional[msg.EpochEnded] = None
        self.epochs_ended = 0
        self.first_epoch: Optional[int] = None
        self.losses: list[float] = []
        self.nonfinite = 0
        self.nonfinite_first: Optional[int] = None
        self.nonfinite_last: Optional[int] = None
        self.checkpoints = 0
        self.last_checkpoint: Optional[msg.CheckpointSaved] = None

    def epoch_ended(self, e: msg.EpochEnded) -> None:
        self.last_epoch = e
        self.epochs_ended += 1
        self.first_epoch = self.first_epoch or e.epoch
        if e.train_loss is not None and math.isfinite(e.train_loss):
            self.losses.append(e.train_loss)
        if self.open_start is None or self.open_start[0].epoch != e.epoch:
            return  # its start was written whole: the map has it already
        start, steps_before = self.open_start
        self.open_start = None
        steps = e.global_step - steps_before
        if self.runs:
            r = self.runs[-1]
            if (r.batch_size, r.last_batch_size, r.accum, r.iterations, r.steps) == (
                    start.batch_size, start.last_batch_size, start.accum, e.iterations, steps) \
                    and start.epoch == r.first_epoch + r.epochs \
                    and start.global_iteration == r.global_iteration + r.epochs * r.iterations \
                    and steps_before == r.global_step + r.epochs * r.steps:
                self.runs[-1] = msg.EpochRun(r.first_epoch, r.epochs + 1, r.global_iteration, r.global_step,
                                             r.iterations, r.batch_size, r.last_batch_size, r.accum, r.steps)
                return
        self.runs.append(msg.EpochRun(start.epoch, 1, start.global_iteration, steps_before, e.iterations,
                                      start.batch_size, start.last_batch_size, start.accum, steps))

    def summary(self) -> msg.EventsSummarized:
        finite = self.losses
        return msg.EventsSummarized(
            self.first_seq, self.last_seq, epochs=self.runs, epochs_ended=self.epochs_ended,
            first_epoch=self.first_epoch, last_epoch=self.last_epoch,
            open_epoch=self.open_start[0] if self.open_start else None,
            train_loss=sum(finite) / len(finite) if finite else None,
            train_loss_min=min(finite) if finite else None, train_loss_max=max(finite) if finite else None,
            nonfinite=self.nonfinite, nonfinite_first=self.nonfinite_first, nonfinite_last=self.nonfinite_last,
            checkpoints=self.checkpoints, last_checkpoint=self.last_checkpoint)


class Folder:
    """Folds routine events into a `Pending` and gives it back as one summary line (`flush`)."""

    def __init__(self) -> None:
        self.pending: Optional[Pending] = None
        self.steps_done: Optional[int] = None  # global_step at the newest epoch end seen (None: unknown)

    def observe(self, event: Any) -> None:
        """Every event passes here, written or folded: the steps at an epoch's start come from it."""
        if isinstance(event, msg.EpochEnded):
            self.steps_done = event.global_step
        elif isinstance(event, msg.EpochStarted) and event.global_iteration == 0:
            self.steps_done = 0

    def foldable(self, event: Any) -> bool:
        if isinstance(event, msg.EpochStarted):
            return self.steps_done is not None  # a resumed run's first start is written: its steps are unknown here
        if isinstance(event, msg.CheckpointSaved):
            return event.reason in ROUTINE_CHECKPOINTS
        return isinstance(event, (msg.EpochEnded, msg.NonFiniteLoss))

    def waits_for_epoch_end(self, event: Any, now: float) -> bool:
        """With something folded, the budget back, and `event` not an epoch end: fold it too, so the
        summary goes out with the next epoch end written whole (the line worth keeping), unless what is
        folded has waited `HOLD_SECONDS` (a long epoch: readers see the stretch within that)."""
        p = self.pending
        return p is not None and not isinstance(event, msg.EpochEnded) and now - p.since < HOLD_SECONDS

    def fold(self, seq: int, event: Any, now: float = 0.0) -> None:
        p = self.pending = self.pending or Pending(seq, now)
        p.last_seq = seq
        if len(p.few) <= RAW_AT_MOST:
            p.few.append((seq, event))
        if isinstance(event, msg.EpochStarted):
            assert self.steps_done is not None
            p.open_start = (event, self.steps_done)
        elif isinstance(event, msg.EpochEnded):
            p.epoch_ended(event)
        elif isinstance(event, msg.NonFiniteLoss):
            p.nonfinite += 1
            p.nonfinite_first = p.nonfinite_first or event.global_iteration
            p.nonfinite_last = event.global_iteration
        elif isinstance(event, msg.CheckpointSaved):
            p.checkpoints += 1
            p.last_checkpoint = event

    def flush(self) -> list[tuple[int, Any]]:
        """The folded events as `[(seq, EventsSummarized)]` (the last folded seq), or `[]`."""
        if self.pending is None:
            return []
        p, self.pending = self.pending, None
        if len(p.few) <= RAW_AT_MOST:
            return p.few  # a summary line would cost more than these few
        return [(p.last_seq, p.summary())]
