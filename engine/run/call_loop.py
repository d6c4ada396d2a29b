"""The Tracker's per-call path, for a loop that reports each micro-batch itself (the Lightning and Hugging
Face callbacks): `safe_point` before a micro-batch, `iteration_done` after it, `step_done` after a step,
`log_loss` for a framework's logged loss. A few microseconds a call — fine beside a framework's own
bookkeeping; `trainmon.track()` uses the hot path (`hot_loop.py`) instead.

A part of `run.tracker.Tracker` kept apart: it reads and sets the Tracker's units.
"""

from __future__ import annotations

from typing import Any, Optional

from trainmon.engine.core import messages as msg


class CallLoop:
    """Mixed into `run.tracker.Tracker`; uses its units, `core`, `_fold`, `_wait_point` and `_publish`."""

    def iteration_ended(self) -> None:
        """The micro-batch asked for never came (the loader ended): nothing is in progress."""
        self._in_iteration = False

    def iteration_started(self) -> None:
        """A micro-batch runs although `safe_point` returned False (a framework cannot skip a batch it has
        fetched): steps taken during it count after it."""
        self._in_iteration = True

    def set_loop_accum(self, k: int) -> None:
        """The loop's own accumulation steps changed (a framework's scheduler): `k` from the next window start."""
        self._window.pending = None if k == self._window.accum else int(k)

    def safe_point(self) -> bool:
        """Before a micro-batch starts: apply viewers' commands and wait while paused. False when a stop
        was asked for (the loop should end). Cheap: call it before every micro-batch."""
        self._fold()
        if not self._wait_point():
            return False
        if not self._window_open:
            self._open_window()
        self._in_iteration = True
        return True

    def iteration_done(self, samples: int, loss: Any = None, weight: Optional[float] = None) -> None:
        """A micro-batch of `samples` samples went through forward and backward; `loss` its mean loss (a
        0-d tensor, read later without a sync, or a number; `None`: not known), `weight` its share in the
        epoch's loss mean (default `samples`, e.g. tokens). Steps the loop took meanwhile count after it."""
        self._fold()
        self.health.iteration_done()  # the heartbeat sees it move
        if not self._epoch_open:
            self.begin_epoch()
        if self.status == msg.STARTING:
            self.status = msg.RUNNING
        p = self.progress
        self._learn_batch_size(samples)
        if loss is not None:
            self._record_loss(loss, p.global_iteration + 1, float(samples if weight is None else weight))
        p.record_iteration(int(samples))
        self._window.weight += float(samples)
        self._in_iteration = False
        steps, self._deferred_steps = self._deferred_steps, 0
        for _ in range(steps):
            self._record_step()
        self._publish()

    def step_done(self) -> None:
        """An optimizer step was taken. Inside a micro-batch (between `safe_point` and `iteration_done`)
        it counts once that micro-batch is done; else at once (a short window stepped after the loop)."""
        self._fold()
        if self._in_iteration:
            self._deferred_steps += 1
        else:
            self._record_step()
            self._publish()

    def log_loss(self, loss: Any, weight: Optional[float] = None) -> None:
        """The loss of the last finished micro-batch (or a framework's logged mean over the last window(s)),
        when it comes after `iteration_done`: a 0-d tensor or a number; `weight` its samples (default the
        open window's, or 1). Right after a step it closes that step's window (the window loss shown)."""
        self._fold()
        p = self.progress
        if p.global_iteration:
            self._record_loss(loss, p.global_iteration, float(weight or p.window_samples or 1))
            if p.window_position == 0 and p.global_step:
                self._losses.close_window()  # the step came first: this loss closes the window it belongs to
            self._publish()

    def _record_loss(self, loss: Any, global_iteration: int, weight: float) -> None:
        import torch

        if isinstance(loss, torch.Tensor):
            value = loss.detach()
            if value.dim():  # shape only: no sync
                if value.numel() != 1:
                    raise ValueError(f"trainmon: the loss must be one number, not a tensor of shape {tuple(loss.shape)}")
                value = value.reshape(())
        else:
            value = torch.tensor(float(loss))
        self._losses.record(value, global_iteration, weight)

    def _record_step(self) -> None:
        p = self._progress
        if (p.window_position != self._window.size and not self._stepped_off_plan and p.window_position
                and self._control.accum_off is not None and not self._after_loader):
            self._warn_off_plan(p.window_position)
        self._losses.close_window()
        p.record_step()
        self._window.close()
        self._window_open = False
        if self.max_steps is not None and p.global_step >= self.max_steps:
            self.core.force_next = True
        if self._epoch_open:
            self._open_next_window(p.iteration_in_epoch)
