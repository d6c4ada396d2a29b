"""The training loop: exact accumulation, safe-point commands, bounded-rate publication.

Runs in whatever thread or process calls `Trainer.run()`, with no terminal and no textual import;
viewers talk to it only through a `Channel`.
"""

from __future__ import annotations

import math
import time
import traceback
from typing import Any, Callable, Optional

import torch
from torch.utils.data import DataLoader

from . import messages as msg
from .arithmetic import (
    MAX_BATCH_SIZE,
    EtaEstimator,
    Progress,
    batch_size_at,
    epoch_samples,
    iterations_per_epoch,
)
from .channel import Channel
from .history import History
from .job import Job, RunConfig, dataset_length, resolve_device


FINAL = (msg.FINISHED, msg.STOPPED, msg.FAILED)


def move_to(batch: Any, device: torch.device) -> Any:
    """Move tensors inside nested tuples, lists and dicts to `device` (non-blocking where possible)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    return batch


def batch_samples(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor. Raises `TypeError` if it has none."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, (list, tuple)):
        for item in batch:
            try:
                return batch_samples(item)
            except TypeError:
                continue
    if isinstance(batch, dict):
        for item in batch.values():
            try:
                return batch_samples(item)
            except TypeError:
                continue
    raise TypeError(f"cannot tell how many samples a batch of type {type(batch).__name__} holds")


def call_model(model: torch.nn.Module, inputs: Any) -> Any:
    """`model(x)`, `model(*x)` for a tuple or list, `model(**x)` for a dict."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (list, tuple)):
        return model(*inputs)
    return model(inputs)


class Trainer:
    """Trains `job` under `config`, publishing to `channel`.

    `clock` gives seconds (monotonic); `publish_interval` bounds the snapshot rate (seconds, default
    0.1 → at most 10/s, plus forced publications at epoch starts and ends, pauses and applied
    changes); the first `warmup_iterations` are left out of the ETA. `sampler`, if given, has
    `latest()` returning a device-telemetry sample to ride in snapshots.
    """

    def __init__(
        self,
        job: Job,
        config: RunConfig,
        channel: Optional[Channel] = None,
        clock: Callable[[], float] = time.monotonic,
        publish_interval: float = 0.1,
        warmup_iterations: int = 5,
        sampler: Any = None,
    ) -> None:
        config.validate()
        self.job, self.config = job, config
        self.channel = channel if channel is not None else Channel()
        self.clock = clock
        self.publish_interval = publish_interval
        self.sampler = sampler
        self.progress = Progress()
        self.loss_history = History()
        self.dataset_size = dataset_length(job.train_dataset)
        self.status = msg.STARTING
        self.device = torch.device("cpu")
        # schedule state: b_t = base · g^(t - origin), capped; a user change moves the base
        self._base_batch_size, self._base_epoch_index = config.batch_size, 0
        self._batch_size = config.batch_size
        self._accum = config.accum
        self._pending_batch_size: Optional[int] = None
        self._pending_accum: Optional[int] = None
        self._paused = self._stop = False
        self._pause_announced = False  # the loop is really waiting (status PAUSED, Paused emitted)
        self._steps_allowed = 0  # single iterations requested while paused (StepOnce), not yet run
        self._future_cache: tuple = (None, (0, 0, 0))
        # timing
        self._t0 = 0.0
        self._paused_total = 0.0
        self._pause_began: Optional[float] = None
        self._last_publish = -math.inf
        self._force_next_publish = False  # publish at the next chance, whatever the rate limit
        self._rate_mark: Optional[tuple[int, int, float]] = None
        self._iter_rate: Optional[float] = None
        self._sample_rate: Optional[float] = None
        self._eta = EtaEstimator(warmup_iterations)
        # loss bookkeeping (read from the device only when publishing)
        self._unread: list[torch.Tensor] = []
        self._unread_meta: list[list] = []  # [global_iteration, weight, closes_window]
        self._win_num = self._win_den = 0.0
        self._epoch_num = self._epoch_den = 0.0
        self._last_loss: Optional[float] = None
        self._window_loss: Optional[float] = None
        self._best_loss: Optional[float] = None
        self._nonfinite = 0
        self._epoch_nonfinite = 0
        self._last_nonfinite: Optional[int] = None
        self._val_loss: Optional[float] = None
        self._val_metrics: dict = {}
        self._best_val_loss: Optional[float] = None
        # window state
        self._window_size = 1
        self._window_expected = 1.0
        self._window_weight = 0.0
        # epoch state
        self._iterations_in_epoch: Optional[int] = None
        self._samples_at_epoch_start = 0
        self._epoch_samples: Optional[int] = None
        self._sent_version = 0
        self._completed_iterations_before = 0  # iterations of finished epochs (for totals)
        self._completed_steps_before = 0
        self._epoch_done = False
        self._epochs_completed = 0
        self._batch_size_before_epoch = config.batch_size

    # ------------------------------------------------------------------------------------------
    # public
    # ------------------------------------------------------------------------------------------
    def run(self) -> Any:
        """Train every epoch; returns the final event, `messages.Finished` or `messages.Failed`.

        Never raises for a failure inside training: the exception is published as `Failed` (with its
        traceback) and returned. `KeyboardInterrupt` propagates after a `Finished(stopped=True)`.
        """
        self._t0 = self.clock()
        try:
            self._setup()
            self.status = msg.RUNNING
            for t in range(self.config.epochs):
                if not self._run_epoch(t):
                    break
            stopped = self._stop
            self.status = msg.STOPPED if stopped else msg.FINISHED
            return self._finish(stopped)
        except KeyboardInterrupt:
            self._stop = True
            self.status = msg.STOPPED
            self._finish(True)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes an event
            from .jobs.loader import format_user_traceback, one_line, user_frames, where

            self.status = msg.FAILED
            at = where(exc)
            full = traceback.format_exc()
            # the user's own frames first (their model, loss, dataset), the whole traceback after
            failed = msg.Failed(message=one_line(exc) + (f" (at {at})" if at else ""), traceback=full,
                                user_traceback=format_user_traceback(exc) if user_frames(exc) else "")
            self._publish(force=True)
            self.channel.emit(failed)
            return failed

    # ------------------------------------------------------------------------------------------
    # set-up and epochs
    # ------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        torch.manual_seed(self.config.seed)
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self.device = resolve_device(self.config.device)
        self.model = self.job.model.to(self.device)
        self.optimizer = self.job.optimizer(self.model.parameters(), self.config.lr)
        self.scheduler = self.job.lr_scheduler(self.optimizer) if self.job.lr_scheduler else None
        self._publish(force=True)

    def _scheduled(self, base: int, epochs_since: int) -> int:
        """`floor(base · g^t)`, at least 1, capped by the run's max batch size and by MAX_BATCH_SIZE."""
        cfg = self.config
        try:
            b = base * cfg.batch_growth ** epochs_since
        except OverflowError:
            b = float(MAX_BATCH_SIZE)
        b = max(1, int(math.floor(min(b, MAX_BATCH_SIZE) + 1e-9)))
        return min(b, cfg.max_batch_size) if cfg.max_batch_size else b

    def _batch_size_for(self, epoch_index: int) -> int:
        return self._scheduled(self._base_batch_size, epoch_index - self._base_epoch_index)

    def _make_loader(self, dataset: Any, batch_size: int, shuffle: bool, drop_last: bool) -> DataLoader:
        iterable = isinstance(dataset, torch.utils.data.IterableDataset)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and not iterable,
            drop_last=drop_last,
            collate_fn=self.job.collate_fn,
            num_workers=self.config.num_workers,
            generator=None if iterable else self._generator,
            pin_memory=self.device.type == "cuda",
        )

    def _run_epoch(self, t: int) -> bool:
        """Run epoch index `t` (0-based). Returns False when the run was stopped."""
        epoch = t + 1
        for command in self.channel.poll_commands():
            self._handle(command)
        if self._stop:
            return False
        if self._pending_batch_size is not None:
            old, new = self._batch_size, self._pending_batch_size
            self._base_batch_size, self._base_epoch_index = new, t
            self._pending_batch_size = None
            self.channel.emit(msg.BatchSizeChanged(old, new, epoch, self.progress.global_iteration))
        b = self._batch_size_for(t)
        if b != self._batch_size and epoch > 1 and self._base_epoch_index != t:
            self.channel.emit(msg.BatchSizeChanged(self._batch_size, b, epoch, self.progress.global_iteration))
        self._batch_size = b
        loader = self._make_loader(self.job.train_dataset, b, self.job.shuffle, self.config.drop_last)
        n = iterations_per_epoch(self.dataset_size, b, self.config.drop_last)
        self._iterations_in_epoch = n
        self._epoch_samples = epoch_samples(self.dataset_size, b, self.config.drop_last)
        if b != self._batch_size_before_epoch:
            self._eta.reset(self.progress.global_iteration)  # a new batch size is a new speed regime
        self._batch_size_before_epoch = b
        self.progress.start_epoch(epoch)
        if self.sampler is not None and hasattr(self.sampler, "begin_epoch"):
            self.sampler.begin_epoch()
        self._epoch_done = False
        self._samples_at_epoch_start = self.progress.samples_seen
        self._epoch_num = self._epoch_den = 0.0
        self._epoch_nonfinite = 0
        self._win_num = self._win_den = 0.0
        self._window_weight = 0.0
        if n != 0:
            self._open_window(0, n, b)  # the accumulation pane shows the new epoch's first window at once
        self.channel.emit(
            msg.EpochStarted(epoch, self.config.epochs, b, self._accum, n,
                             None if n is None else batch_size_at(n - 1, self.dataset_size, b, self.config.drop_last),
                             self.progress.global_iteration)
        )
        self._publish(force=True)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        batches = iter(loader)
        i = 0
        while True:
            if n is not None and i >= n:
                break
            if not self._safe_point():
                return False
            if self.progress.window_position == 0:
                self._open_window(i, n, b)
            try:
                batch = next(batches)
            except StopIteration:
                break
            self._train_iteration(batch)
            i += 1
            if self.progress.window_position >= self._window_size:
                self._optimizer_step()
            self._publish()
        if self.progress.window_position > 0:  # the loader ended inside a window: step the short window
            self._optimizer_step()
        self._flush_losses()
        self._epoch_done = True
        self._completed_iterations_before += self.progress.iteration_in_epoch
        self._completed_steps_before += self.progress.steps_in_epoch
        self._iterations_in_epoch = self.progress.iteration_in_epoch if n is None else n
        self._val_loss, self._val_metrics = self._validate(b)
        if self._val_loss is not None and (self._best_val_loss is None or self._val_loss < self._best_val_loss):
            self._best_val_loss = self._val_loss
        epoch_lr = self._lr()  # the rate this epoch trained at, before the scheduler moves it
        if self.scheduler is not None:
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                monitored = self._val_loss if self._val_loss is not None else self._epoch_loss()
                if monitored is not None:
                    self.scheduler.step(monitored)  # plateau schedulers watch a metric: val loss, else train loss
            else:
                self.scheduler.step()
        peak = None
        if self.sampler is not None:
            try:  # one sample at the epoch boundary (never inside an iteration), so short epochs have a peak too
                self.sampler.sample_once()
                peak = self.sampler.epoch_peak()
            except Exception:  # noqa: BLE001 - telemetry never breaks a run
                peak = None
        self.channel.emit(
            msg.EpochEnded(
                epoch=epoch, epochs=self.config.epochs, iterations=self.progress.iteration_in_epoch,
                iterations_planned=n, steps=self.progress.steps_in_epoch, samples_seen=self.progress.samples_seen,
                train_loss=self._epoch_loss(), val_loss=self._val_loss, val_metrics=dict(self._val_metrics),
                batch_size=b, accum=self._accum, lr=epoch_lr, elapsed=self.clock() - self._t0,
                global_iteration=self.progress.global_iteration, global_step=self.progress.global_step,
                nonfinite=self._epoch_nonfinite, peak_memory=peak,
            )
        )
        self._epochs_completed = epoch
        self._publish(force=True)
        return not self._stop

    # ------------------------------------------------------------------------------------------
    # windows, iterations, steps
    # ------------------------------------------------------------------------------------------
    def _open_window(self, i: int, n: Optional[int], b: int) -> None:
        """Start an accumulation window at 0-based iteration `i`: apply a pending accum, size the window."""
        if self._pending_accum is not None:
            old, self._accum = self._accum, self._pending_accum
            self._pending_accum = None
            self.channel.emit(msg.AccumChanged(old, self._accum, self.progress.epoch, self.progress.global_iteration))
            self._publish(force=True)
        k = self._accum
        self._window_size = k if n is None else min(k, n - i)
        if self.job.batch_count is None and n is not None:
            # known length: the window's samples are known now, so each micro-batch gets its exact share
            self._window_expected = float(sum(
                batch_size_at(j, self.dataset_size, b, self.config.drop_last) for j in range(i, i + self._window_size)
            ))
        else:
            # unknown length or a job's own counts: a guess, corrected exactly at the step (see _optimizer_step)
            self._window_expected = float(self._window_size * b)
        self._window_weight = 0.0

    def _train_iteration(self, batch: Any) -> None:
        batch = move_to(batch, self.device)
        if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
            raise TypeError(
                f"each batch must be an (inputs, targets) pair; the loader gave a {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (list, tuple)) else "")
            )
        inputs, targets = batch
        samples = batch_samples(batch)
        weight = float(self.job.batch_count(batch)) if self.job.batch_count else float(samples)
        outputs = call_model(self.model, inputs)
        loss = self.job.loss_fn(outputs, targets)
        # Exact accumulation: the batch-mean loss scaled by this micro-batch's share of the window, so
        # the window's summed gradient equals that of the mean loss over all its samples.
        scale = weight / self._window_expected
        (loss if scale == 1.0 else loss * scale).backward()  # k = 1 with a known length: no extra op
        self._unread.append(loss.detach())  # read later in one go: no per-iteration GPU sync
        self._unread_meta.append([self.progress.global_iteration + 1, weight, False])
        self._window_weight += weight
        self.progress.record_iteration(samples)

    def _optimizer_step(self) -> None:
        actual = self._window_weight
        if actual > 0 and actual != self._window_expected:
            # the window held other counts than planned (unknown length, job counts): rescale to n_i/n_window
            factor = self._window_expected / actual
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(factor)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self._unread_meta:
            self._unread_meta[-1][2] = True
        self.progress.record_step()
        self._window_weight = 0.0

    # ------------------------------------------------------------------------------------------
    # commands and safe points
    # ------------------------------------------------------------------------------------------
    def _safe_point(self) -> bool:
        """Before an iteration starts: apply commands, wait while paused. False means stop.

        While paused, each queued `StepOnce` lets exactly one iteration through (several queued
        ones run one after another); the loop then waits again.
        """
        for command in self.channel.poll_commands():
            self._handle(command)
        if not self._paused or self._stop:
            return not self._stop
        if not self._steps_allowed:
            self._announce_pause()
            self._publish(force=True)
            self._pause_began = self.clock()
            while self._paused and not self._stop and not self._steps_allowed:
                command = self.channel.wait_command(timeout=0.2)
                if command is not None:
                    self._handle(command)
                else:
                    self._publish(min_interval=1.0)  # elapsed time keeps moving for viewers
            self._paused_total += self.clock() - self._pause_began
            self._pause_began = None
        if self._paused and self._steps_allowed and not self._stop:
            self._steps_allowed -= 1
            self._force_next_publish = True  # show the stepped iteration as soon as it is done
        return not self._stop

    def _announce_pause(self) -> None:
        if not self._pause_announced:
            self._pause_announced = True
            self.status = msg.PAUSED
            self.channel.emit(msg.Paused(self.progress.global_iteration))

    def _reject(self, command: Any, reason: str) -> None:
        self.channel.emit(msg.CommandRejected(command, reason))

    def _handle(self, command: Any) -> None:
        """Apply one command or reject it with a reason; never raises."""
        progress = self.progress
        if isinstance(command, msg.Pause):
            if self._paused:
                return self._reject(command, "already paused")
            self._paused = True  # the status turns PAUSED when the loop really waits (next safe point)
        elif isinstance(command, msg.Resume):
            if not self._paused:
                return self._reject(command, "not paused")
            self._paused = False
            self._steps_allowed = 0
            if self._pause_announced:
                self._pause_announced = False
                self.status = msg.RUNNING
                self.channel.emit(msg.Resumed(progress.global_iteration))
        elif isinstance(command, msg.StepOnce):
            if not self._paused:
                return self._reject(command, "single-iteration step works only while paused")
            self._steps_allowed += 1
        elif isinstance(command, msg.Stop):
            self._stop = True
            self.status = msg.STOPPING
        elif isinstance(command, msg.SetBatchSize):
            b = command.batch_size
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                return self._reject(command, f"batch size must be a whole number >= 1, got {b!r}")
            if b > MAX_BATCH_SIZE:
                return self._reject(command, f"batch size must be at most {MAX_BATCH_SIZE}")
            if self.config.drop_last and self.dataset_size is not None and b > self.dataset_size:
                return self._reject(command, f"batch size {b} exceeds the {self.dataset_size} samples with drop_last")
            if progress.epoch >= self.config.epochs:
                return self._reject(command, "no epoch left to apply a new batch size")
            if b == self._batch_size and self._pending_batch_size is None:
                return self._reject(command, f"batch size is already {b}")
            self._pending_batch_size = None if b == self._batch_size else b
        elif isinstance(command, msg.SetAccum):
            k = command.accum
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                return self._reject(command, f"accumulation steps must be a whole number >= 1, got {k!r}")
            if k == self._accum and self._pending_accum is None:
                return self._reject(command, f"accumulation steps are already {k}")
            self._pending_accum = None if k == self._accum else k
        else:
            return self._reject(command, f"unknown command {type(command).__name__}")
        self.channel.emit(msg.CommandAccepted(command))
        self._publish(force=True)

    # ------------------------------------------------------------------------------------------
    # losses, validation, publication
    # ------------------------------------------------------------------------------------------
    def _flush_losses(self) -> None:
        """Read every loss since the last publication in one transfer (one sync point per publish)."""
        if not self._unread:
            return
        values = torch.stack(self._unread).float().tolist()  # the only per-publish device sync
        meta, self._unread, self._unread_meta = self._unread_meta, [], []
        for value, (global_iteration, weight, closes) in zip(values, meta):
            self.loss_history.append(global_iteration, value)
            if math.isfinite(value):
                self._last_loss = value
                self._epoch_num += value * weight
                self._epoch_den += weight
                self._win_num += value * weight
                self._win_den += weight
                if self._best_loss is None or value < self._best_loss:
                    self._best_loss = value
            else:
                self._nonfinite += 1
                self._epoch_nonfinite += 1
                self._last_nonfinite = global_iteration
                self.channel.emit(msg.NonFiniteLoss(global_iteration, self.progress.epoch, value))
            if closes:
                self._window_loss = self._win_num / self._win_den if self._win_den else None
                self._win_num = self._win_den = 0.0

    def _epoch_loss(self) -> Optional[float]:
        return self._epoch_num / self._epoch_den if self._epoch_den else None

    def _lr(self) -> Optional[float]:
        groups = self.optimizer.param_groups if hasattr(self, "optimizer") else []
        return float(groups[0]["lr"]) if groups else None

    def _validate(self, b: int) -> tuple[Optional[float], dict]:
        """Sample-weighted mean validation loss and metrics; `(None, {})` without a validation set."""
        if self.job.val_dataset is None:
            return None, {}
        loader = self._make_loader(self.job.val_dataset, max(b, 256), shuffle=False, drop_last=False)
        self.model.eval()
        sums: list[torch.Tensor] = []
        total = 0
        with torch.no_grad():
            for batch in loader:
                batch = move_to(batch, self.device)
                inputs, targets = batch
                n = batch_samples(batch)
                outputs = call_model(self.model, inputs)
                row = [self.job.loss_fn(outputs, targets).detach().float() * n]
                row += [torch.as_tensor(fn(outputs, targets), dtype=torch.float32, device=self.device) * n
                        for fn in self.job.metrics.values()]
                sums.append(torch.stack(row))
                total += n
        self.model.train()
        if not total:
            return None, {}
        values = (torch.stack(sums).sum(0) / total).tolist()  # one sync per validation
        return values[0], {name: v for name, v in zip(self.job.metrics, values[1:])}

    def _active_seconds(self, now: float) -> float:
        paused = self._paused_total + (now - self._pause_began if self._pause_began is not None else 0.0)
        return max(0.0, now - self._t0 - paused)

    def _publish(self, force: bool = False, min_interval: Optional[float] = None) -> None:
        """Publish a snapshot if `min_interval` (default `publish_interval`) seconds have passed, or when
        forced; cheap to call every iteration."""
        now = self.clock()
        interval = self.publish_interval if min_interval is None else min_interval
        if not force and not self._force_next_publish and now - self._last_publish < interval:
            return
        self._force_next_publish = False
        self._last_publish = now
        self._flush_losses()
        snapshot = self._snapshot(now)
        delta = self.loss_history.since(self._sent_version)
        self._sent_version = delta.version
        self.channel.publish(snapshot, delta)

    def _rates(self, now: float, active: float) -> None:
        p = self.progress
        if self._rate_mark is not None:
            it0, s0, a0 = self._rate_mark
            dt = active - a0
            if dt >= 0.05 and p.global_iteration > it0:
                ir, sr = (p.global_iteration - it0) / dt, (p.samples_seen - s0) / dt
                a = 0.5  # exponential smoothing between publications
                self._iter_rate = ir if self._iter_rate is None else a * ir + (1 - a) * self._iter_rate
                self._sample_rate = sr if self._sample_rate is None else a * sr + (1 - a) * self._sample_rate
                self._rate_mark = (p.global_iteration, p.samples_seen, active)
        else:
            self._rate_mark = (p.global_iteration, p.samples_seen, active)
        self._eta.update(p.global_iteration, p.samples_seen, active)

    def _future_batch_size(self, t: int) -> int:
        """Batch size epoch index `t` will run at, counting a pending change (it applies at the next epoch)."""
        if self._pending_batch_size is None:
            return self._batch_size_for(t)
        return self._scheduled(self._pending_batch_size, t - self.progress.epoch)

    def _totals(self) -> tuple[Optional[int], Optional[int], Optional[int], Optional[int]]:
        """Planned (total iterations, total steps, total samples, steps this epoch) under current settings.

        Done epochs count what really ran; the current epoch its plan with the windows seen so far;
        later epochs are planned with the schedule, a pending batch size and a pending accum.
        """
        p, m = self.progress, self.dataset_size
        if m is None:
            return None, None, None, None
        k_next = self._pending_accum or self._accum
        total_it, total_steps, total_samples = (
            self._completed_iterations_before, self._completed_steps_before, self._samples_at_epoch_start)
        steps_this_epoch = None
        if p.epoch and self._iterations_in_epoch is not None and not self._epoch_done:
            remaining = max(0, self._iterations_in_epoch - p.iteration_in_epoch)
            if p.window_position > 0:
                rest_of_window = max(0, self._window_size - p.window_position)
                steps_left = 1 + -(-max(0, remaining - rest_of_window) // k_next)
            else:
                steps_left = -(-remaining // k_next)
            steps_this_epoch = p.steps_in_epoch + steps_left
            total_it += self._iterations_in_epoch
            total_steps += steps_this_epoch
            total_samples += self._epoch_samples or 0
        elif p.epoch:
            steps_this_epoch = p.steps_in_epoch
            total_samples = p.samples_seen
        future_it, future_steps, future_samples = self._future_totals(k_next)
        return total_it + future_it, total_steps + future_steps, total_samples + future_samples, steps_this_epoch

    def _future_totals(self, k: int) -> tuple[int, int, int]:
        """(iterations, steps, samples) of the epochs after the current one; cached until a setting changes.

        Epochs at a constant batch size are multiplied out, so a run of 100,000 epochs costs no more
        per snapshot than one of 5 (the schedule is walked only while the batch size still moves).
        """
        cfg, m, start = self.config, self.dataset_size, self.progress.epoch
        key = (start, k, self._pending_batch_size, self._base_batch_size, self._base_epoch_index)
        if self._future_cache[0] == key:
            return self._future_cache[1]
        it = steps = samples = 0
        previous = None
        for t in range(start, cfg.epochs):  # later epochs, 0-based index t
            b = self._future_batch_size(t)
            n = iterations_per_epoch(m, b, cfg.drop_last) or 0
            epoch = (n, -(-n // k), n * b if cfg.drop_last else m)
            settled = b == previous and (cfg.batch_growth == 1 or b == cfg.max_batch_size or b == 1)
            if settled:  # every later epoch is the same
                left = cfg.epochs - t
                it, steps, samples = it + left * epoch[0], steps + left * epoch[1], samples + left * epoch[2]
                break
            it, steps, samples = it + epoch[0], steps + epoch[1], samples + epoch[2]
            previous = b
        self._future_cache = (key, (it, steps, samples))
        return it, steps, samples

    def _pending(self) -> tuple[msg.PendingChange, ...]:
        pending = []
        if self._pending_batch_size is not None:
            pending.append(msg.PendingChange("batch size", self._batch_size, self._pending_batch_size,
                                             f"start of epoch {self.progress.epoch + 1}"))
        if self._pending_accum is not None:
            pending.append(msg.PendingChange("accumulation steps", self._accum, self._pending_accum,
                                             "start of the next window"))
        return tuple(pending)

    def _snapshot(self, now: float) -> msg.Snapshot:
        p = self.progress
        active = self._active_seconds(now)
        self._rates(now, active)
        total_it, total_steps, total_samples, steps_epoch = self._totals()
        remaining = None if total_samples is None else max(0, total_samples - p.samples_seen)
        devices = None
        if self.sampler is not None:
            try:
                devices = self.sampler.latest()
            except Exception:  # noqa: BLE001 - telemetry never breaks a run
                devices = None
        return msg.Snapshot(
            status=self.status, job=self.job.name, device=str(self.device),
            epoch=p.epoch, epochs=self.config.epochs,
            iteration_in_epoch=p.iteration_in_epoch, iterations_in_epoch=self._iterations_in_epoch,
            last_batch_size=(None if self._iterations_in_epoch is None or self.dataset_size is None else
                             batch_size_at(self._iterations_in_epoch - 1, self.dataset_size, self._batch_size,
                                           self.config.drop_last)),
            batch_size=self._batch_size, accum=self._accum, drop_last=self.config.drop_last, lr=self._lr(),
            batch_growth=self.config.batch_growth, max_batch_size=self.config.max_batch_size,
            dataset_size=self.dataset_size,
            global_iteration=p.global_iteration, total_iterations=total_it,
            global_step=p.global_step, total_steps=total_steps,
            steps_in_epoch=p.steps_in_epoch, steps_per_epoch=steps_epoch,
            samples_seen=p.samples_seen, total_samples=total_samples,
            window_position=p.window_position, window_size=self._window_size, window_samples=p.window_samples,
            effective_batch_size=self._batch_size * self._accum,
            loss=self._last_loss, window_loss=self._window_loss, epoch_loss=self._epoch_loss(),
            best_loss=self._best_loss, val_loss=self._val_loss, val_metrics=dict(self._val_metrics),
            best_val_loss=self._best_val_loss, nonfinite_count=self._nonfinite,
            last_nonfinite_iteration=self._last_nonfinite,
            # no speed while paused: nothing is moving (the ETA stays, counted in active time only)
            iterations_per_second=None if self._pause_announced or self.status in FINAL else self._iter_rate,
            samples_per_second=None if self._pause_announced or self.status in FINAL else self._sample_rate,
            elapsed=now - self._t0, active_seconds=active,
            eta_seconds=None if self.status in FINAL else self._eta.eta(remaining),
            pending=self._pending(), history_version=self.loss_history.version, devices=devices, time=now,
        )

    def _finish(self, stopped: bool) -> msg.Finished:
        self._flush_losses()
        self._publish(force=True)
        p = self.progress
        finished = msg.Finished(
            stopped=stopped, epochs_completed=self._epochs_completed,
            global_iteration=p.global_iteration, global_step=p.global_step, samples_seen=p.samples_seen,
            elapsed=self.clock() - self._t0, train_loss=self._epoch_loss(), val_loss=self._val_loss,
            val_metrics=dict(self._val_metrics),
        )
        self.channel.emit(finished)
        return finished
