"""The Tracker's epochs: an epoch begins (a pending batch size applies), its loader is described (the
loader's batch size and length are the truth), and it ends (its figures announced). Every loop kind of
the Tracker — `trainmon.track()` and the framework callbacks — goes through these.

A part of `run.tracker.Tracker` kept apart: it reads and sets the Tracker's units.
"""

from __future__ import annotations

from typing import Any, Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.arithmetic import batch_size_at, epoch_samples, iterations_per_epoch
from trainmon.engine.core.rates import group_rates


class EpochCalls:
    """Mixed into `run.tracker.Tracker`; uses its units, `core`, `_fold`, `_open_window` and `_publish`."""

    def begin_epoch(self, epoch: Optional[int] = None, iterations: Optional[int] = None,
                    batch_size: Optional[int] = None, samples: Optional[int] = None,
                    epochs: Optional[int] = None) -> int:
        """An epoch starts: 1-based `epoch` (default: the next), its planned `iterations` (`None`:
        unknown), the `batch_size` its loader uses and the `samples` it holds, when known; `epochs` the
        planned total when it changed. A pending batch-size change applies here. Returns the epoch."""
        self._fold()
        if self._epoch_open:
            self.end_epoch()
        p = self.progress
        epoch = p.epoch + 1 if epoch is None else int(epoch)
        if epochs is not None:
            self.plan_epochs(epochs)
        self._changed_to = None
        for change in self._batch_sizes.begin_epoch(epoch - 1, p.global_iteration):
            self.channel.emit(change)
            self._changed_to = change.new
            self._speed.reset_eta(p.global_iteration)
            self.health.batch_size_changed()
        p.start_epoch(epoch)
        self.describe_loader(iterations, batch_size, samples)
        self.core.begin_epoch_telemetry()
        self._losses.begin_epoch()
        self._window.close()
        self._window_open = False
        self._after_loader = False
        self._epoch_open = True
        self._open_window()
        self._epoch_unannounced = True
        if iterations is not None or batch_size is not None:
            self._announce_epoch()
        # else `EpochStarted` waits for the loader (run.batches describes it), so it carries the loader's
        # batch size and length, not a guess; an epoch that never describes one announces at its end
        self._publish()  # rate-limited: tiny epochs must not publish 40 times a second
        return epoch

    def _learn_batch_size(self, first_batch_samples: int) -> None:
        """A loader that does not say its batch size (a generator): the epoch's first batch does."""
        if not self._batch_size_known and self._progress.iteration_in_epoch == 0:
            self.describe_loader(self._iterations_planned, int(first_batch_samples))

    def _announce_epoch(self) -> None:
        """`EpochStarted` for the open epoch, once, with what is known of its loader."""
        if not self._epoch_unannounced:
            return
        self._epoch_unannounced = False
        p = self._progress
        b, n = self._batch_sizes.batch_size, self._iterations_planned
        last = None
        if n and self.dataset_size is not None and b:
            last = batch_size_at(n - 1, self.dataset_size, b, self.drop_last)
        self.channel.emit(msg.EpochStarted(p.epoch, self.config.epochs, b, self._window.accum, n, last,
                                           p.global_iteration - p.iteration_in_epoch))

    def describe_loader(self, iterations: Optional[int] = None, batch_size: Optional[int] = None,
                        samples: Optional[int] = None) -> None:
        """What this epoch's loader holds, learnt when the loop hands it over: `iterations` planned,
        `batch_size` and dataset `samples`. The loader's batch size is the truth: the policy follows it."""
        if samples is not None:
            self.dataset_size = self._totals.samples = self._batch_sizes.dataset_size = samples
        if batch_size is not None and batch_size != self._batch_sizes.batch_size:
            if self._changed_to is not None and self._control.batch_size_off is None:
                self.warn(f"the loop's loader has batch size {batch_size}, not the {self._changed_to} asked for: "
                          f"build the loader from run.batch_size at each epoch start (run.loader(...) does)")
            self._changed_to = None
            self._batch_sizes.restart(int(batch_size), max(self.progress.epoch - 1, 0))
        if batch_size is not None:
            self._batch_size_known = True
        b = self._batch_sizes.batch_size
        p = self.progress
        if iterations is not None and p.iteration_in_epoch and self._iterations_planned is not None:
            iterations += p.iteration_in_epoch  # a second loader in the same epoch: its batches add up
        planned = iterations if iterations is not None else (
            iterations_per_epoch(self.dataset_size, b, self.drop_last) if self.dataset_size is not None
            and self._batch_size_known else None)
        self._iterations_planned = planned
        m = self.dataset_size
        start = p.samples_seen if p.iteration_in_epoch == 0 else self._totals.samples_at_epoch_start
        self._totals.begin_epoch(planned, epoch_samples(m, b, self.drop_last) if m is not None else None, start)
        if p.iteration_in_epoch == 0 and p.window_position == 0:
            self._window_open = False  # the first window is sized by what the loader holds
        if self._batch_size_known and self._epoch_open:
            self._announce_epoch()

    def end_epoch(self, cut_short: bool = False) -> None:
        """The epoch's loader is done (and its validation recorded, if any). Idempotent per epoch.
        `cut_short`: the loop left the epoch before its end (an exception, Ctrl+C, `sys.exit`, a `break`
        out of the epochs): it counts as completed only if all its planned iterations ran."""
        self._fold()
        if not self._epoch_open:
            return
        self._announce_epoch()
        self._epoch_open = False
        self._in_iteration = False
        for _ in range(self._deferred_steps):
            self._record_step()
        self._deferred_steps = 0
        self.core.flush_losses()
        p = self.progress
        if p.epoch == 1 and not p.global_step and self._lr_source is None and p.iteration_in_epoch:
            self.warn("no optimizer step seen in the first epoch: pass your optimizer to trainmon.track(optimizer) "
                      "to count steps", stderr=True)
        self._totals.end_epoch(p.iteration_in_epoch, p.steps_in_epoch)
        peak = self.core.epoch_peak()
        self._speed.epoch_ended(self.clock(), p.global_iteration, p.samples_seen)
        data_wait, monitor = self.health.epoch_ended()
        planned = self._iterations_planned
        ran_all = planned is not None and p.iteration_in_epoch >= planned
        if ran_all or not (cut_short or self._control.stopping):
            self._emit_epoch_ended(peak, data_wait, monitor)
            self._totals.epochs_completed = p.epoch
        # else a stop cut the epoch short: not a completed one, and no EpochEnded (no `epoch=` line), as the
        # engine's; its iterations, steps and samples are in the `stopped` line's totals
        self._publish()  # rate-limited: tiny epochs must not publish 40 times a second

    def _emit_epoch_ended(self, peak: Any, data_wait: Optional[float], monitor: Optional[float]) -> None:
        """`EpochEnded` for the epoch just ended: its figures, `peak` memory and time shares."""
        p, losses = self.progress, self._losses
        self.channel.emit(msg.EpochEnded(
            epoch=p.epoch, epochs=self.config.epochs, iterations=p.iteration_in_epoch,
            iterations_planned=self._iterations_planned, steps=p.steps_in_epoch, samples_seen=p.samples_seen,
            train_loss=losses.epoch_loss, val_loss=losses.epoch_validation[0], val_metrics=losses.epoch_validation[1],
            batch_size=self._batch_sizes.batch_size, accum=self._window.accum, lr=self._lr(),
            elapsed=self._speed.elapsed(self.clock()), global_iteration=p.global_iteration,
            global_step=p.global_step, nonfinite=losses.epoch_nonfinite, train_losses=losses.epoch_losses, peak_memory=peak,
            learning_rates=group_rates(tuple(float(g["lr"]) for g in getattr(self._lr_source, "param_groups", ()))),
            steps_skipped=p.steps_skipped, data_wait=data_wait, monitor=monitor,
            throughput=self.core.throughput.at_epoch_end(self._speed, self.config.precision),
        ))
