"""The Tracker's hot loop (`Run.batches`): per iteration only `HotPath`'s integers and references; here the
rest, in bulk — the span folded into the run's units at a publication, an epoch's end, or a figure read.

A part of `run.tracker.Tracker` kept apart (as `trainer_checkpoints` is of the Trainer): it reads and sets
the Tracker's units. Torch only when losses are read.
"""

from __future__ import annotations

from time import perf_counter
from typing import Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.arithmetic import iterations_per_epoch, last_batch_size
from trainmon.engine.run.hot import HotPath


class HotLoop:
    """Mixed into `run.tracker.Tracker`; uses its `hot`, `core`, units and `_open_window_at`."""

    # ------------------------------------------------------------------------------------------
    # the hot loop (`Run.batches`): per iteration only `hot`; the rest here, in bulk
    # ------------------------------------------------------------------------------------------
    def hot_begin(self, exact: Optional[tuple[int, int]]) -> HotPath:
        """A hot loop starts over a loader: `exact = (b, m)` when each batch's samples follow from the
        loader's batch size `b` and dataset size `m` (else the loop appends each batch's count to
        `hot.samples`). Returns the `HotPath` the loop touches."""
        self._fold()
        hot = self.hot
        self._exact_samples = None if exact is None else (self._progress.iteration_in_epoch, *exact)
        self._after_loader = False
        hot.samples = None if exact is not None else []
        hot.active, hot.inside, hot.check = True, 1, True
        self.health.loop_began()
        return hot

    def loader_ran_out(self) -> None:
        """The epoch's loader ended: a step from now on closes its last window, however short (no warning
        about the loop's accumulation steps for it: a loader without a length gives no earlier sign)."""
        self._fold()
        self._after_loader = True

    def hot_end(self, completed: bool) -> None:
        """The hot loop ended (its loader ran out, or it was left); `completed`: the batch that was out
        with the loop counts as done."""
        hot = self.hot
        if not hot.active:
            return
        if completed:
            hot.n += 1
        self._fold()
        self.health.loop_ended()
        hot.active, hot.inside = False, 0
        hot.check = True

    def hot_point(self) -> bool:
        """The loop's slow path, when `hot.check` is up: fold, apply commands, wait while paused, publish.
        False when a stop was asked for."""
        began = perf_counter()  # trainmon's own time here is the `monitor=` figure (a pause's wait left out)
        self._fold()
        self._publish()  # before the next window opens: a snapshot shows the iteration just done
        planned = self._iterations_planned
        go = True
        if planned is None or self._progress.iteration_in_epoch < planned:
            go = self._wait_point()
            if not self._window_open:
                self._open_window()
        self.hot.check = self._keep_checking()
        self.health.checked(perf_counter() - began)
        return go

    def _keep_checking(self) -> bool:
        """Something waits for the next iteration (not for the next publication): check at every one."""
        control = self._control
        return bool(self.core.publish_interval <= 0 or control.paused or control.stopping or self.core.force_next
                    or self._window.pending is not None or not self._batch_size_known
                    or self.channel.stop_pending)

    def _fold(self) -> None:
        """Bring the units up to date with the hot loop's span: counters, windows, losses, history."""
        hot = self.hot
        if not hot.n and not hot.steps:
            return
        n, losses, weights, counts, steps, gaps, floats = hot.take()
        p = self._progress
        if n == 0 and not steps:
            return
        if counts is None:
            per = self._exact_counts(n)
        else:
            per = counts
            if counts:
                self._learn_batch_size(counts[0])
        if self.status == msg.STARTING:
            self.status = msg.RUNNING
        first = p.global_iteration
        start_in_epoch = p.iteration_in_epoch
        before = p.window_position
        total = sum(per)
        p.iteration_in_epoch += n
        p.global_iteration += n
        p.samples_seen += total
        self.health.span(n, total)
        if weights:  # the job's own count (tokens): summed here, at the fold, for tokens/s
            self.core.throughput.add_weights(weights, per)
        if losses:
            self._fold_losses(losses, per, weights, first, steps, gaps, floats)
        if steps:
            self._fold_steps(steps, n, per, before, start_in_epoch)
        else:
            p.window_position += n
            p.window_samples += total
        self._window.weight = float(p.window_samples)

    def unfolded_samples(self, n: int) -> int:
        """Samples of the first `n` iterations the hot loop has not folded yet (the heartbeat's thread: read
        only; 0 outside a hot loop)."""
        hot = self.hot
        if not hot.active or n <= 0:
            return 0
        if hot.samples is not None:
            return sum(hot.samples[:n])
        return sum(self._exact_counts(n)) if self._exact_samples is not None else 0

    def _exact_counts(self, n: int) -> list[int]:
        """Samples of the span's `n` iterations from the loader's arithmetic (all `b`, the last shorter)."""
        loader_start, b, m = self._exact_samples
        per = [b] * n
        j = self._progress.iteration_in_epoch - loader_start  # the span's first iteration, in the loader's count
        last = iterations_per_epoch(m, b, self.drop_last) - 1
        if j <= last < j + n:
            per[last - j] = last_batch_size(m, b, self.drop_last)
        return per

    def _fold_losses(self, losses: list, per: list[int], weights: dict[int, float], first: int, steps: list[int],
                     gaps: int, floats: bool) -> None:
        import torch

        tensors = losses if not (gaps or floats) else [v for v in losses if v is not None and type(v) is not float]
        read: list = []
        try:
            if tensors and tensors[0].device.type == "cpu":
                read = list(map(torch.Tensor.item, tensors))  # CPU: no sync to avoid; the cheapest read per value
            elif tensors:
                with torch.no_grad():
                    stacked = torch.stack(tensors)
                    if stacked.numel() != len(tensors):
                        raise RuntimeError("a loss of several numbers")
                    read = stacked.reshape(-1).float().tolist()  # the one device sync of this publication
        except RuntimeError:  # `run.log` checks a tensor's shape here, in bulk, not per iteration
            self._not_one_number(losses, first)  # raises for a loss of several numbers
            with torch.no_grad():  # shapes () and (1,) mixed: one number each
                read = torch.stack([t.reshape(()) for t in tensors]).float().tolist()
        if tensors is losses:
            values = read
        else:  # gaps (iterations that logged nothing) or numbers among the tensors: merge, in order
            it = iter(read)
            values = [v if v is None or type(v) is float else next(it) for v in losses]
        w = per[: len(values)] if not weights else [weights.get(i, c) for i, c in enumerate(per[: len(values)])]
        self.core.nonfinite_losses(self._losses.add_span(values, w, first, steps))

    @staticmethod
    def _not_one_number(losses: list, first: int) -> None:
        """Raise the one-line `ValueError` for the first logged loss that holds several numbers."""
        for i, loss in enumerate(losses):
            numel = getattr(loss, "numel", None)
            if numel is not None and numel() != 1:
                raise ValueError(f"trainmon: run.log takes the batch's mean loss, one number, not a tensor of shape "
                                 f"{tuple(loss.shape)} (global iteration {first + 1 + i})")

    def _fold_steps(self, steps: list[int], n: int, per: list[int], before: int, start_in_epoch: int) -> None:
        p, window = self._progress, self._window
        first_window = before + steps[0]
        if (first_window != window.size and not self._stepped_off_plan and first_window
                and self._control.accum_off is not None and not self._after_loader):
            self._warn_off_plan(first_window)
        count = len(steps)
        last = steps[-1]
        p.global_step += count
        p.steps_in_epoch += count
        p.window_position = n - last
        p.window_samples = sum(per[last:])
        window.close()
        self._window_open = False
        if self.max_steps is not None and p.global_step >= self.max_steps:
            self.core.force_next = True
        self._open_next_window(start_in_epoch + last)

    def _open_next_window(self, iteration_in_epoch: int) -> None:
        """After a step: the next window opens at once when the epoch has iterations left, so viewers see
        the window that comes (the epoch's short last one included), not the one just stepped."""
        planned = self._iterations_planned
        if planned is None or iteration_in_epoch < planned:
            self._open_window_at(iteration_in_epoch)

    def _warn_off_plan(self, observed: int) -> None:
        self._stepped_off_plan = True
        self.warn(f"the loop stepped the optimizer after {observed} micro-batches where trainmon expected "
                  f"{self._window.size} (accum={self._window.accum}): pass the loop's accum to trainmon.track; "
                  f"showing accum={observed} from now on (not warned again)", stderr=True)
        self._window.accum, self._window.pending = observed, None  # the windows shown follow the loop's

    @property
    def window_end(self) -> bool:
        """True when the micro-batch in progress closes its accumulation window (its `k`-th, or the last
        of the epoch): the loop should step the optimizer after it. Reading it marks `accum` as read."""
        if self._control.accum_off is not None:
            self.offer_accum(None)
        hot = self.hot
        if hot.active:  # without a fold: this is read at every iteration of a hot loop
            p, steps, n = self._progress, hot.steps, hot.n
            in_epoch = p.iteration_in_epoch + n + 1
            planned = self._iterations_planned
            if planned is not None and in_epoch >= planned:
                return True
            if steps and steps[-1] <= n:  # a window opened in this span, after its last step
                return n - steps[-1] + 1 >= self._window.accum
            return p.window_position + n + 1 >= (self._window.size if self._window_open else self._window.next_accum)
        p = self._progress
        done = p.window_position + (1 if self._in_iteration else 0)
        if self._iterations_planned is not None and p.iteration_in_epoch + (
                1 if self._in_iteration else 0) >= self._iterations_planned:
            return True
        return done >= self._window.size
