"""Which batch size each epoch runs at: the configured schedule, moved by a user's request, never above its cap.

Torch-free. The schedule itself is `arithmetic.BatchSizeSchedule`; this unit only decides where it
starts (a request restarts it from the requested size) and which requests it can honour.
"""

from __future__ import annotations

from typing import Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.arithmetic import MAX_BATCH_SIZE, BatchSizeSchedule, batch_size_error


class BatchSizePolicy:
    """The batch size of each epoch, and the user's requests to change it.

    Epoch index `t` (0-based) runs at `BatchSizeSchedule(base, growth, cap).at(t - origin)`, with the
    cap `--max-batch-size` (or `MAX_BATCH_SIZE` when none is set). An accepted request waits in
    `pending` until the next epoch start, where it becomes the new `base` and `origin`. A request
    above the cap is refused, so the batch size announced is always the one that runs.

    State (`state_dict`): `base`, `origin` (epoch index where `base` applied), `batch_size` (the
    current epoch's, in samples) and `pending` (a requested batch size or `None`).
    """

    def __init__(self, batch_size: int, growth: float = 1.0, max_batch_size: Optional[int] = None,
                 epochs: int = 1, dataset_size: Optional[int] = None, drop_last: bool = False) -> None:
        self.growth, self.max_batch_size, self.epochs = growth, max_batch_size, epochs
        self.dataset_size, self.drop_last = dataset_size, drop_last
        self.base, self.origin, self.batch_size = batch_size, 0, batch_size
        self.pending: Optional[int] = None
        self.failed: Optional[int] = None  # a batch size that ran out of memory: asking for it (or more) twice
        self.schedule_cap: Optional[int] = None  # after an out-of-memory: the schedule grows no further by itself
        self._schedule = self._from(batch_size)
        self._pending_schedule: Optional[BatchSizeSchedule] = None

    def _from(self, base: int) -> BatchSizeSchedule:
        cap = min(self.max_batch_size or MAX_BATCH_SIZE, self.schedule_cap or MAX_BATCH_SIZE)
        return BatchSizeSchedule(base, self.growth, max(cap, base))

    def refusal(self, b: object) -> Optional[str]:
        """Why batch size `b` can never run in this run (not a whole number, too large, above the cap,
        more than the samples with drop_last); `None` when it can."""
        error = batch_size_error("batch size", b)
        if error is not None:
            return error
        if self.max_batch_size is not None and b > self.max_batch_size:
            return f"batch size {b} is above the cap --max-batch-size {self.max_batch_size}"
        if self.drop_last and self.dataset_size is not None and b > self.dataset_size:
            return f"batch size {b} exceeds the {self.dataset_size} samples with drop_last"
        return None

    def request(self, b: object, epoch: int) -> Optional[str]:
        """Ask for batch size `b` from the epoch after 1-based `epoch`: `None` when accepted (it waits in
        `pending`; asking for the current size again cancels a pending one), else the reason it is refused."""
        reason = self.refusal(b)
        if reason is not None:
            return reason
        if epoch >= self.epochs:
            return "no epoch left to apply a new batch size"
        if self.failed is not None and b >= self.failed:
            failed, self.failed = self.failed, None  # asking again is the confirmation
            return (f"batch size {failed} ran out of memory in this run; ask for {b} again to try it anyway")
        if b == self.batch_size and self.pending is None:
            return f"batch size is already {b}"
        self.pending = None if b == self.batch_size else b
        self.schedule_cap = None  # the user's own size: the schedule is theirs again
        self._pending_schedule = None if self.pending is None else self._from(self.pending)
        return None

    def begin_epoch(self, t: int, global_iteration: int) -> list[msg.BatchSizeChanged]:
        """Set `batch_size` for epoch index `t` (a pending request applies here); the changes to announce."""
        epoch, changes = t + 1, []
        if self.pending is not None:
            changes.append(msg.BatchSizeChanged(self.batch_size, self.pending, epoch, global_iteration))
            self.base, self.origin, self._schedule = self.pending, t, self._pending_schedule or self._from(self.pending)
            self.pending = self._pending_schedule = None
        b = self._schedule.at(t - self.origin)
        if b != self.batch_size and epoch > 1 and self.origin != t:  # the schedule moved it
            changes.append(msg.BatchSizeChanged(self.batch_size, b, epoch, global_iteration))
        self.batch_size = b
        return changes

    def revert(self, good: int, failed: int, t: int) -> None:
        """Epoch index `t` runs again at `good` after `failed` ran out of memory: the schedule restarts
        there and never grows past `good` by itself; a request for `failed` or more needs asking twice."""
        self.schedule_cap, self.failed = good, failed
        self.pending, self._pending_schedule = None, None
        self.restart(good, t)

    def restart(self, b: int, t: int) -> None:
        """Epoch index `t` runs at batch size `b` and the schedule starts again there (a pending request
        stays): after an out-of-memory, or where a tracked loop's own loader says so."""
        self.base, self.origin, self.batch_size = b, t, b
        self._schedule = self._from(b)

    def schedule_from(self, t: int) -> tuple[BatchSizeSchedule, int]:
        """The schedule epoch index `t` (the next to start) and later run under, and `t`'s index in it,
        counting a pending request."""
        if self.pending is not None:
            return self._pending_schedule or self._from(self.pending), 0
        return self._schedule, t - self.origin

    def pending_change(self, epoch: int) -> Optional[msg.PendingChange]:
        """The pending request as shown to viewers, at the start of the epoch after 1-based `epoch`."""
        if self.pending is None:
            return None
        return msg.PendingChange("batch size", self.batch_size, self.pending, f"start of epoch {epoch + 1}")

    def state_dict(self) -> dict:
        return {"base": self.base, "origin": self.origin, "batch_size": self.batch_size, "pending": self.pending,
                "failed": self.failed, "schedule_cap": self.schedule_cap}

    def load_state_dict(self, state: dict) -> None:
        self.base, self.origin, self.batch_size = state["base"], state["origin"], state["batch_size"]
        self.pending = state["pending"]
        self.failed = state.get("failed")
        self.schedule_cap = state.get("schedule_cap")
        self._schedule = self._from(self.base)
        self._pending_schedule = None if self.pending is None else self._from(self.pending)
