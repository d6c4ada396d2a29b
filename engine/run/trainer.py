"""The training loop: exact accumulation, safe-point commands, bounded-rate publication.

Runs in whatever thread or process calls `Trainer.run()`, with no terminal and no textual import;
viewers talk to it only through a `Channel`.
"""

from __future__ import annotations

import time
import traceback
import warnings
from typing import Any, Callable, Optional

import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.core.arithmetic import batch_size_at, epoch_samples, iterations_per_epoch
from trainmon.engine.core.rates import group_rates
from trainmon.engine.core.schedule import BatchSizePolicy
from trainmon.engine.core.snapshot import build_snapshot
from trainmon.engine.core.window import AccumulationWindow
from trainmon.engine.jobs.job import Job, RunConfig, dataset_length
from trainmon.engine.record.checkpoint_files import CheckpointError, CheckpointStore
from trainmon.engine.run import checkpoint_state as run_state
from trainmon.engine.run.checkpoint_saver import CheckpointSaver
from trainmon.engine.run.clipping import GradClipper
from trainmon.engine.run.core import RunCore
from trainmon.engine.run.loop_health import LoopHealth
from trainmon.engine.run.trainer_checkpoints import Checkpointing
from trainmon.engine.run.trainer_iteration import REDO, TrainerIteration
from trainmon.engine.run.validation import validate

# torchdata 0.11 calls a torch function that newer torch deprecated, once per loader: not the user's business
warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)


class Trainer(Checkpointing, TrainerIteration):
    """Trains `job` under `config`, publishing to `channel`.

    `clock` gives seconds (monotonic); `publish_interval` bounds the snapshot rate (seconds, default
    0.1 → at most 10/s, plus forced publications at epoch starts and ends, pauses and applied
    changes); the first `warmup_iterations` are left out of the ETA. `sampler`, if given, has
    `latest()` returning a device-telemetry sample to ride in snapshots.

    The Trainer owns the loop order (epochs, windows, iterations) and the model; the run state lives
    in units with a `state_dict()` each: the batch sizes (`BatchSizePolicy`), the open accumulation
    window (`AccumulationWindow`), pause/step/stop (`RunControl`), the losses (`LossTracker`), time and
    speed (`Speed`), the planned totals (`PlannedTotals`), besides `progress` and `loss_history`.

    `distributed` (an `engine.distributed.Distributed`, on a torchrun rank) makes this loop one rank's:
    its sampler share, DDP, agreements on commands at safe points, the run's snapshot (see that module).
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
        worker_log: Optional[str] = None,
        checkpoints: Optional[CheckpointStore] = None,
        resume: Optional[run_state.ResumeFrom] = None,
        run_id: Optional[str] = None,
        distributed: Any = None,
    ) -> None:
        config.validate()
        self.job, self.config = job, config
        self.channel = channel if channel is not None else Channel()
        self.clock = clock
        self.worker_log = worker_log  # the file this process's stderr (and its DataLoader workers') goes to
        self._worker_log_start = 0
        # IterableDatasets are never drawn from ahead of training: their first batch is checked here
        self._unchecked = {which for which, data in (("training", job.train_dataset), ("validation", job.val_dataset))
                           if isinstance(data, torch.utils.data.IterableDataset)}
        self._short_epoch_warned = False
        self.dataset_size = dataset_length(job.train_dataset)
        # a torchrun rank (`distributed.Distributed`): its loop counts its own share of the samples
        self._dist = distributed
        if distributed is not None and self.dataset_size is not None:
            self.dataset_size = distributed.per_rank_samples(self.dataset_size, config.drop_last)
        self.device = torch.device("cpu")
        self.core = core = RunCore(
            self.channel, BatchSizePolicy(config.batch_size, config.batch_growth, config.max_batch_size,
                                          config.epochs, self.dataset_size, config.drop_last),
            AccumulationWindow(config.accum), dataset_size=self.dataset_size, epochs=config.epochs,
            drop_last=config.drop_last, clock=clock, publish_interval=publish_interval,
            warmup_iterations=warmup_iterations, sampler=sampler)
        core.snapshot, core.before_publish = self._snapshot, self._before_publish
        self.health = core.health = LoopHealth(None, core)  # where the time goes, liveness (loop_health.py)
        # the core's units, by the names the loop, checkpoints (run_state.py) and tests use
        self.progress, self.loss_history, self._losses = core.progress, core.loss_history, core.losses
        self._batch_sizes, self._window, self._control = core.batch_sizes, core.window, core.control
        self._speed, self._totals = core.speed, core.totals
        self._clipper = GradClipper(config.clip_grad_norm)
        # checkpoints (engine/record/checkpoint_files.py keeps the files, engine/run/checkpoint_state.py says what they hold)
        self._saver = CheckpointSaver(checkpoints if config.checkpoints else None, config.checkpoint_minutes, clock)
        if self._saver.enabled:
            self._control.checkpoints_off = None
        elif not config.checkpoints:
            self._control.checkpoints_off = "checkpoints are off (--no-checkpoints)"
        self._resume = resume
        self._run_id = run_id
        self._mid_epoch_state: Optional[dict] = None  # a mid-epoch checkpoint's state, until its epoch goes on
        self._loader: Optional[StatefulDataLoader] = None  # the training epoch's loader while an epoch runs
        self._in_epoch = False  # between an epoch's start and its end: a save now is a mid-epoch one
        self._changes = 0  # accepted batch-size and accumulation changes (a save holds them)
        self._last_good_batch_size: Optional[int] = None  # the batch size of the newest epoch that completed

    @property
    def sampler(self) -> Any:
        """Device telemetry (`latest()` rides in snapshots), or `None`."""
        return self.core.sampler

    @property
    def status(self) -> msg.RunStatus:
        """Where the run stands (`messages.RunStatus`)."""
        return self._control.status

    @status.setter
    def status(self, value: msg.RunStatus) -> None:
        self._control.status = value

    # ------------------------------------------------------------------------------------------
    # public
    # ------------------------------------------------------------------------------------------
    def run(self) -> Any:
        """Train every epoch; returns the final event, `messages.Finished` or `messages.Failed`.

        Never raises for a failure inside training: the exception is published as `Failed` (with its
        traceback) and returned. `KeyboardInterrupt` propagates after a `Finished(stopped=True)`.
        """
        self._speed.start(self.clock())
        heartbeat = self.health.heartbeat()  # stopped and joined when run() returns or raises
        if self._dist is not None:  # every rank's beat through the store; rank 0 judges them: hang, straggler
            from trainmon.engine.run.rank_watch import watch_ranks

            watch_ranks(self.core, self._dist)
        try:
            self._setup()
            start = self._restore() if self._resume is not None else 0
            self.status = msg.RUNNING
            self._saver.arm()
            t = start
            while t < self.config.epochs:
                outcome = self._run_epoch(t)
                if outcome is REDO:  # out of memory after a batch-size increase: the epoch again, smaller
                    continue
                if not outcome:
                    break
                t += 1
            stopped = self._control.stopping
            if self._dist is not None:
                self._agree([], True)  # the last figures of every rank, for the final snapshot
            if stopped:  # a scheduler's grace period is short: wait for the file, say how long it took
                self._save("signal" if self.channel.stop_signalled else "stop", wait=True)
            self.status = msg.STOPPED if stopped else msg.FINISHED
            return self._finish(stopped)
        except KeyboardInterrupt:
            self._control.stopping = True
            self.status = msg.STOPPED
            self._finish(True)
            raise
        except CheckpointError as exc:  # the checkpoint does not fit the job: refused before training goes on
            self._emit_all(self._saver.close())
            self.status = msg.FAILED
            failed = msg.Failed(message=str(exc), traceback="", phase="setup")
            self.channel.emit(failed)
            return failed
        except Exception as exc:  # noqa: BLE001 - every failure becomes an event
            from trainmon.engine.jobs.loader import (
                JobError,
                format_user_traceback,
                one_line,
                user_frames,
                where,
                worker_error,
            )

            self.status = msg.FAILED
            at = where(exc)
            full = traceback.format_exc()
            message = worker_error(exc, self.worker_log, self._worker_log_start) or one_line(exc)
            if isinstance(exc, JobError):
                message = str(exc)  # already one line that names where
            # a job refused on its first batch (an IterableDataset's, checked here) is a setup failure
            phase = "setup" if (isinstance(exc, JobError) and self.progress.global_iteration == 0
                                and not isinstance(exc.__cause__, torch.OutOfMemoryError)) else "training"
            # the user's own frames first (their model, loss, dataset), the whole traceback after
            failed = msg.Failed(message=message + (f" (at {at})" if at else ""), traceback=full,
                                user_traceback=format_user_traceback(exc) if user_frames(exc) else "", phase=phase)
            if self._dist is not None:  # the rank that failed first is the run's cause; a peer's error follows it
                from trainmon.engine.record.rank_failures import root_cause

                failed = root_cause(self._dist.failure_dir, self._dist.rank, failed)
            self._emit_all(self._saver.close())  # a save being written when it failed still lands
            self._publish(force=True)
            self.channel.emit(failed)
            return failed
        finally:
            heartbeat.stop(beat=False)  # the run's end is told: no beat after it

    # ------------------------------------------------------------------------------------------
    # set-up and epochs
    # ------------------------------------------------------------------------------------------
    def _run_epoch(self, t: int) -> bool:
        """Run epoch index `t` (0-based), from its start or, after a mid-epoch checkpoint, from where the
        checkpoint was taken. Returns False when the run was stopped."""
        epoch, cfg, p = t + 1, self.config, self.progress
        resumed, self._mid_epoch_state = self._mid_epoch_state, None
        self._apply_commands(force_agreement=True)  # ranks agree at every epoch start
        if self._control.stopping:
            return False
        if resumed is None:
            loader, n, b = self._begin_epoch(t)
            batches = iter(loader)
        else:
            loader, n, b, batches = self._continue_epoch(resumed)
        batches = self.health.timed(batches)  # two clock reads around each batch: `data_wait=`
        self._loader, self._in_epoch = loader, True
        i = p.iteration_in_epoch
        opened = -1  # the iteration whose window was opened already (right after the step before it)
        while True:
            if n is not None and i >= n:
                break
            if not self._safe_point():
                return False
            if p.window_position == 0 and (opened != i or self._window.pending is not None):
                self._open_window(i, n, b)  # again only when the safe point just took an accumulation change
            try:
                batch = next(batches)
            except StopIteration:
                break
            try:
                self._train_iteration(batch)
            except torch.OutOfMemoryError as exc:
                if self._dist is not None:
                    raise  # one rank going back alone would part the ranks: the run fails instead
                del batch, batches
                return self._out_of_memory(t, exc)
            i += 1
            if p.window_position >= self._window.size:
                self._optimizer_step()
                if n is None or i < n:
                    self._open_window(i, n, b)  # viewers see the coming window (the short last one) at once
                    opened = i
            self._publish()
        if p.window_position > 0:  # the loader ended inside a window: step the short window
            self._optimizer_step()
        self.health.caught_up(p.global_iteration, p.samples_seen)
        self.health.loop_ended()
        self._warn_short_epoch(epoch, n)
        self._flush_losses()
        self._totals.end_epoch(p.iteration_in_epoch, p.steps_in_epoch)
        with self._speed.set_aside("validation", self.clock):  # left out of the rate and the ETA
            self._losses.record_validation(*self._validate(b))
        self._end_epoch(epoch, n, b)
        self._loader, self._in_epoch = None, False
        self._last_good_batch_size = b
        every = cfg.checkpoint_every
        if every and (epoch % every == 0 or epoch == cfg.epochs):
            self._save("epoch end")
        return not self._control.stopping

    def _begin_epoch(self, t: int) -> tuple[StatefulDataLoader, Optional[int], int]:
        """Start epoch index `t`: apply a pending batch size, build the loader, announce the epoch;
        `(loader, planned iterations or None, batch size)`."""
        epoch, cfg, p = t + 1, self.config, self.progress
        before = self._batch_sizes.batch_size
        for change in self._batch_sizes.begin_epoch(t, p.global_iteration):
            self.channel.emit(change)
        b = self._batch_sizes.batch_size
        loader = self._make_loader(self.job.train_dataset, b, self.job.shuffle, cfg.drop_last, stateful=True,
                                   epoch=t)
        n = iterations_per_epoch(self.dataset_size, b, cfg.drop_last)
        self._totals.begin_epoch(n, epoch_samples(self.dataset_size, b, cfg.drop_last), p.samples_seen)
        if b != before:
            self._speed.reset_eta(p.global_iteration)  # a new batch size is a new speed regime
        p.start_epoch(epoch)
        self.core.begin_epoch_telemetry()
        self._losses.begin_epoch()
        self._window.close()
        if n != 0:
            self._open_window(0, n, b)  # the accumulation pane shows the new epoch's first window at once
        self.channel.emit(
            msg.EpochStarted(epoch, cfg.epochs, b, self._window.accum, n,
                             None if n is None else batch_size_at(n - 1, self.dataset_size, b, cfg.drop_last),
                             p.global_iteration)
        )
        self._publish(force=True)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        return loader, n, b

    def _continue_epoch(self, state: dict) -> tuple[StatefulDataLoader, Optional[int], int, Any]:
        """Go on with the epoch a mid-epoch checkpoint was taken in: its loader at the same position
        (torchdata restores the order and the batches yielded), the accumulated gradients and every
        RNG as they were (restored after the iterator is made, which draws from the loader's generator)."""
        b = self._batch_sizes.batch_size
        loader = self._make_loader(self.job.train_dataset, b, self.job.shuffle, self.config.drop_last, stateful=True,
                                   epoch=self.progress.epoch - 1)
        loader.load_state_dict(state["loader"])
        batches = iter(loader)
        run_state.set_rng_state(state["rng"], self._generator)
        self.core.begin_epoch_telemetry()
        self.model.train()
        self._publish(force=True)
        return loader, iterations_per_epoch(self.dataset_size, b, self.config.drop_last), b, batches

    def _end_epoch(self, epoch: int, n: Optional[int], b: int) -> None:
        """After training and validation: step the lr scheduler, sample telemetry, announce the epoch."""
        losses, p = self._losses, self.progress
        epoch_lr = self._lr()  # the rate this epoch trained at, before the scheduler moves it
        epoch_rates = tuple(float(g["lr"]) for g in self.optimizer.param_groups) if hasattr(self, "optimizer") else ()
        if self.scheduler is not None and self.job.lr_scheduler_interval == "epoch":
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                monitored = losses.val_loss if losses.val_loss is not None else losses.epoch_loss
                if monitored is not None:
                    self.scheduler.step(monitored)  # plateau schedulers watch a metric: val loss, else train loss
            else:
                self.scheduler.step()
        peak = self.core.epoch_peak()  # sampled at the boundary (never inside an iteration): short epochs too
        self._speed.epoch_ended(self.clock(), p.global_iteration, p.samples_seen)
        data_wait, monitor = self.health.epoch_ended()
        self.channel.emit(
            msg.EpochEnded(
                epoch=epoch, epochs=self.config.epochs, iterations=p.iteration_in_epoch,
                iterations_planned=n, steps=p.steps_in_epoch, samples_seen=self._samples_seen(),
                train_loss=losses.epoch_loss, val_loss=losses.epoch_validation[0], val_metrics=losses.epoch_validation[1],
                batch_size=b, accum=self._window.accum, lr=epoch_lr, elapsed=self._speed.elapsed(self.clock()),
                global_iteration=p.global_iteration, global_step=p.global_step,
                nonfinite=losses.epoch_nonfinite, train_losses=losses.epoch_losses, peak_memory=peak,
                steps_skipped=p.steps_skipped,
                learning_rates=group_rates(epoch_rates), grad_norm=self._clipper.last_norm,
                data_wait=data_wait, monitor=monitor, throughput=self.core.throughput.at_epoch_end(
                    self._speed, self.config.precision, self._dist.world_size if self._dist is not None else 1),
            )
        )
        self._totals.epochs_completed = epoch
        self._publish(force=True)

    def _warn(self, message: str) -> None:
        self.core.warn(message)

    # ------------------------------------------------------------------------------------------
    # losses, validation, publication
    # ------------------------------------------------------------------------------------------
    def _flush_losses(self) -> None:
        """Read every loss since the last publication in one transfer (one sync point per publish)."""
        self.core.flush_losses()
        self._clipper.flush()

    def _lr(self) -> Optional[float]:
        groups = self.optimizer.param_groups if hasattr(self, "optimizer") else []
        return float(groups[0]["lr"]) if groups else None

    def _validate(self, b: int) -> tuple[Optional[float], dict]:
        """Sample-weighted mean validation loss and metrics; `(None, {})` without a validation set."""
        if self.job.val_dataset is None:
            return None, {}
        vb = self.config.val_batch_size or b  # the job's default is in the config; never a hidden 256
        loader = self._make_loader(self.job.val_dataset, vb, shuffle=False, drop_last=False)
        self.model.eval()
        try:
            return validate(self.job, self.model, loader, self.device, self.progress.epoch,
                            lambda batch: self._check_first(batch, "validation"))
        finally:
            self.model.train()

    def _publish(self, force: bool = False, min_interval: Optional[float] = None) -> None:
        """Publish a snapshot if `min_interval` (default `publish_interval`) seconds have passed, or when
        forced; cheap to call every iteration."""
        began = time.perf_counter()
        self.core.publish(force, min_interval)
        self.health.checked(time.perf_counter() - began)  # trainmon's own time: `monitor=`

    def _before_publish(self) -> None:
        self.health.caught_up(self.progress.global_iteration, self.progress.samples_seen)
        self._flush_losses()  # losses, then the clipper's figures, then a finished save: the order events had
        if self._saver.in_flight:
            self._emit_all(self._saver.collect())

    def _snapshot(self, now: float, active: float) -> msg.Snapshot:
        p = self.progress
        schedule, index = self._batch_sizes.schedule_from(p.epoch)
        totals = self._totals.totals(p, self._window.size, self._window.next_accum, schedule, index)
        devices = self.core.devices()
        snapshot = build_snapshot(
            now=now, active=active, job=self.job.name, device=str(self.device), config=self.config,
            dataset_size=self.dataset_size, progress=p, control=self._control, batch_sizes=self._batch_sizes,
            window=self._window, losses=self._losses, speed=self._speed, totals=totals,
            iterations_in_epoch=self._totals.iterations_in_epoch, lr=self._lr(), devices=devices,
            history_version=self.loss_history.version, checkpoints=self._saver.enabled,
            last_checkpoint=self._saver.last, clipper=self._clipper,
            learning_rates=tuple(float(g["lr"]) for g in self.optimizer.param_groups) if hasattr(self, "optimizer")
            else (),
        )
        return snapshot if self._dist is None else self._dist.decorate(snapshot)

    def _samples_seen(self) -> int:
        """Samples seen for events: this loop's, or on a rank the run's over all ranks (padding apart)."""
        p = self.progress
        if self._dist is None:
            return p.samples_seen
        return self._dist.samples_seen(p.samples_seen, p.epoch, p.iteration_in_epoch, self._totals.iterations_in_epoch)

    def _finish(self, stopped: bool) -> msg.Finished:
        self._emit_all(self._saver.close())
        self._flush_losses()
        self._publish(force=True)
        return self.core.finished(stopped, self._samples_seen())
