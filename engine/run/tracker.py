"""A loop trainmon does not own, recorded like one it does: the `Tracker` behind `trainmon.track()` and the
Lightning and Hugging Face callbacks.

The user's loop (or a framework's) tells the tracker what happened — an epoch began, a micro-batch's
forward and backward finished with this many samples and this loss, an optimizer step was taken, the
validation gave these figures — and the tracker keeps the same units the engine's own loop keeps
(`Progress`, `LossTracker`, `Speed`, `PlannedTotals`, `RunControl`, ...), publishes bounded-rate
snapshots and events to a run directory and a control socket (`EngineSession`), and answers viewers'
commands at the loop's safe points. `trainmon attach`, `ls`, `logs` and `stop` work on it unchanged.

Optimizer steps are counted by observing the optimizer (`Optimizer.register_step_post_hook`), so the
windows shown are the loop's real ones. Losses are kept as tensors and read at publication (one sync
per publication, never per iteration). No textual; torch is imported only when a tensor comes in.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.core.progress import Progress
from trainmon.engine.core.schedule import BatchSizePolicy
from trainmon.engine.core.snapshot import build_snapshot
from trainmon.engine.core.totals import steps_cut
from trainmon.engine.core.window import AccumulationWindow
from trainmon.engine.run.call_loop import CallLoop
from trainmon.engine.run.epoch_calls import EpochCalls
from trainmon.engine.run.hot import HotPath, Ticker
from trainmon.engine.run.hot_loop import HotLoop
from trainmon.engine.run.loop_health import LoopHealth
from trainmon.engine.run.rank_watch import watch_tracked

NO_CHECKPOINTS = "this loop saves its own checkpoints (trainmon saves none for a tracked loop)"
BATCH_SIZE_UNREAD = "this loop never reads run.batch_size: it cannot take a new batch size"
ACCUM_UNREAD = "this loop never reads run.accum: it cannot take new accumulation steps"


class _Config:
    """The few run settings a snapshot shows, for a loop whose settings are its own."""

    def __init__(self, epochs: int, drop_last: bool) -> None:
        self.epochs, self.drop_last = epochs, drop_last
        self.batch_growth, self.max_batch_size = 1.0, None
        self.clip_grad_norm, self.precision = None, "fp32"


class Tracker(HotLoop, CallLoop, EpochCalls):
    """Records a training loop that trainmon does not run into a run directory, live.

    `name`: what `ls` and the TUI call the run (the script's name). `epochs`: planned epochs (0 or
    `None`: unknown until `begin_epoch` says). `batch_size` (samples) and `accum` (micro-batches per
    optimizer step, the `k` the loop uses) are the starting values; `dataset_size` (samples, `None`:
    unknown) and `drop_last` make totals exact; `max_steps` cuts the planned totals at that many
    optimizer steps. `settings` land in run.json. `run_dir`: record there (default: a new folder under
    the runs root, or the one `trainmon exec` made, from `$TRAINMON_RUN_DIR`). `session=False` records
    nothing (a `channel` of the caller's only: tests, ranks other than 0). `alerts`: an `AlertSettings`
    (default `TRAINMON_ALERTS`, else all on).

    Call order: `start()`; per epoch `begin_epoch()`; per micro-batch `safe_point()` (False: stop)
    then `iteration_done()`; `step_done()` after each optimizer step (or `watch_optimizer()` once);
    `validation()` and `end_epoch()`; `finish()`. Never raises from a viewer's command or a telemetry
    failure; raises `ValueError` (one line) for a bad argument.
    """

    def __init__(self, name: str, *, epochs: Optional[int] = None, batch_size: Optional[int] = None,
                 accum: int = 1, dataset_size: Optional[int] = None, drop_last: bool = False,
                 max_steps: Optional[int] = None, settings: Optional[dict] = None, run_dir: Optional[str] = None,
                 channel: Optional[Channel] = None, session: bool = True, telemetry: bool = True,
                 clock: Callable[[], float] = time.monotonic, publish_interval: float = 0.1,
                 warmup_iterations: int = 5, device: str = "cpu", alerts: Any = None) -> None:
        for label, value, minimum in (("epochs", epochs, 0), ("batch_size", batch_size, 1), ("accum", accum, 1),
                                      ("dataset_size", dataset_size, 0), ("max_steps", max_steps, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
                raise ValueError(f"trainmon.track: {label} must be a whole number >= {minimum}, not {value!r}")
        self.name, self.settings, self.max_steps = name, dict(settings or {}), max_steps
        self.device = device
        self.channel = channel if channel is not None else Channel(up=False)  # sinks only: nobody polls here
        self.clock = clock
        self.hot = HotPath()  # the per-iteration state a hot loop (`Run.batches`) touches; folded in bulk
        self.hot.step_outside = self.step_done
        self._ticker: Optional[Ticker] = None
        self._exact_samples: Optional[tuple[int, int, int]] = None  # (loader start, b, m): samples by arithmetic
        self.dataset_size, self.drop_last = dataset_size, drop_last
        self.config = _Config(epochs or 0, drop_last)
        from trainmon.engine.run.core import RunCore  # torch: a tracker only exists where the user's loop has it loaded

        self.core = core = RunCore(
            self.channel, BatchSizePolicy(batch_size or 1, epochs=max(epochs or 0, 1), dataset_size=dataset_size,
                                          drop_last=drop_last), AccumulationWindow(accum),
            dataset_size=dataset_size, epochs=epochs or 0, drop_last=drop_last, clock=clock,
            publish_interval=publish_interval, warmup_iterations=warmup_iterations, alerts=alerts)
        core.snapshot, core.before_publish = self._snapshot, self._fold
        self.health = core.health = LoopHealth(self.hot, core)  # where the time goes, liveness (loop_health.py)
        self.health.unfolded_samples = self.unfolded_samples
        self._heartbeat: Any = None
        self._rank_watch: Any = None  # a torchrun rank's watch (engine/run/rank_watch.py), from start()
        # the core's units, by the names this class and its readers use
        self._progress, self.loss_history, self._losses = core.progress, core.loss_history, core.losses
        self._batch_sizes, self._window, self._control = core.batch_sizes, core.window, core.control
        self._speed, self._totals = core.speed, core.totals
        self._batch_size_known = batch_size is not None
        self._control.checkpoints_off = NO_CHECKPOINTS
        self._control.batch_size_off = BATCH_SIZE_UNREAD
        self._control.accum_off = ACCUM_UNREAD
        self._iterations_planned: Optional[int] = None
        self._in_iteration = False
        self._deferred_steps = 0
        self._window_open = False
        self._lr_source: Any = None
        self._hooks: list[Any] = []
        self._stepped_off_plan = False
        self._after_loader = False  # the epoch's loader ran out (a step now closes its last window)
        self._epoch_unannounced = False  # EpochStarted waits for the epoch's loader (epoch_calls.py)
        self._want_session, self._run_dir, self._telemetry = session, run_dir, telemetry
        self.session: Any = None
        self.result: Optional[msg.Message] = None
        self._epoch_open = False
        self._changed_to: Optional[int] = None  # a batch size applied at this epoch's start, until the loader shows it

    # ------------------------------------------------------------------------------------------
    # start and end
    # ------------------------------------------------------------------------------------------
    def start(self) -> "Tracker":
        """Open the run directory and control socket (unless `session=False`), start device telemetry,
        publish the first snapshot. Raises `OSError`/`BlockingIOError` (one line) when the run directory
        cannot be made or another engine holds it."""
        if self._want_session:
            from trainmon.engine.run.session import open_tracked_session

            self.session = open_tracked_session(self.name, self.settings, self._run_dir, self.channel,
                                                alerts=self.core.alerts.settings)
        if self._telemetry:
            try:
                from trainmon.engine.telemetry.sampler import DeviceSampler

                self.core.sampler = DeviceSampler(interval=1.0).start()
            except Exception:  # noqa: BLE001 - telemetry never stops a run
                self.core.sampler = None
        self._speed.start(self.clock())
        self._publish(force=True)
        self._ticker = Ticker(self.hot, lambda: max(self.core.interval_now(), 0.01)).start()
        self.channel.wake = self._wake
        self._heartbeat = self.health.heartbeat()
        self._rank_watch = watch_tracked(self.core)  # under torchrun: every rank's beat, hang / straggler
        return self

    def _wake(self) -> None:
        """A viewer's command came (any thread, or a signal handler): the loop looks at its next iteration."""
        self.hot.check = True

    @property
    def progress(self) -> Progress:
        """The run's counters, current to the last completed iteration (a hot loop's span folded first)."""
        self._fold()
        return self._progress

    @property
    def publish_interval(self) -> float:
        """Seconds between publications (0: at every iteration, for tests that read each one)."""
        return self.core.publish_interval

    @publish_interval.setter
    def publish_interval(self, seconds: float) -> None:
        self.core.publish_interval = seconds  # the ticker reads it at its next tick
        self.hot.check = True

    @property
    def run_id(self) -> Optional[str]:
        return self.session.run_id if self.session is not None else None

    @property
    def run_path(self) -> Optional[Path]:
        return self.session.rundir.path if self.session is not None else None

    def finish(self, error: Optional[BaseException] = None, stopped: Optional[bool] = None) -> msg.Message:
        """End the run: `Finished` (stopped when a stop was asked for, or `stopped`), or `Failed` with
        `error`'s one line and traceback. Idempotent: a second call returns the first result."""
        if self.result is not None:
            return self.result
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._fold()
        self.hot.active = False
        if self._ticker is not None:
            self._ticker.stop()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._epoch_open and error is None:
            self.end_epoch(cut_short=True)  # the loop ended inside an epoch (its own end_epoch came first otherwise)
        self.core.flush_losses()
        if error is not None:
            from trainmon.engine.jobs.loader import one_line

            self.status = msg.FAILED
            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self._publish(force=True)
            result: msg.Message = msg.Failed(message=one_line(error), traceback=tb, phase="training")
        else:
            stopped = self._control.stopping if stopped is None else stopped
            self.status = msg.STOPPED if stopped else msg.FINISHED
            self._publish(force=True)
            result = self.core.finished(stopped)
        if isinstance(result, msg.Failed):
            self.channel.emit(result)
        self.result = result
        if self._rank_watch is not None:  # its last beat (this rank ended) now, before the script leaves the
            self._rank_watch.stop()  # process group, not from an exit handler at the interpreter's end
            self._rank_watch = None
        if self.core.sampler is not None:
            self.core.sampler.stop()
        if self.session is not None:
            self.session.close(1 if error is not None else 0)
        return result

    @property
    def status(self) -> msg.RunStatus:
        return self._control.status

    @status.setter
    def status(self, value: msg.RunStatus) -> None:
        self._control.status = value

    # ------------------------------------------------------------------------------------------
    # what the loop reads
    # ------------------------------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        """A viewer asked to stop (`q`, `trainmon stop`): the loop should end after this iteration."""
        return self._control.stopping or self.channel.stop_pending

    @property
    def batch_size(self) -> int:
        """The batch size (samples) the loop should use now; a change asked for by a viewer shows here
        from the next epoch's start. Reading it tells viewers the loop takes batch-size changes."""
        if not self._batch_size_known:
            raise ValueError("trainmon: run.batch_size is not known yet: give trainmon.track(batch_size=...) to build "
                             "loaders from it")
        self.offer_batch_size(None)
        return self._batch_sizes.batch_size

    @property
    def accum(self) -> int:
        """The accumulation steps `k` of the open window (a change applies at the next window start).
        Reading it tells viewers the loop takes accumulation changes."""
        self.offer_accum(None)
        return self._window.accum

    def offer_batch_size(self, reason: Optional[str]) -> None:
        """`None`: the loop applies new batch sizes at epoch starts (the key is live); a reason: it
        cannot, and viewers' `+`/`-`/`b` keys are dimmed with it."""
        if reason != self._control.batch_size_off:
            self._control.batch_size_off = reason
            self.core.force_next = True

    def offer_accum(self, reason: Optional[str]) -> None:
        """As `offer_batch_size`, for accumulation steps (applied at window starts)."""
        if reason != self._control.accum_off:
            self._control.accum_off = reason
            self.core.force_next = True

    # ------------------------------------------------------------------------------------------
    # what the loop tells
    # ------------------------------------------------------------------------------------------
    def watch_optimizer(self, optimizer: Any, count_steps: bool = True) -> None:
        """Count `optimizer`'s steps from now on (a step post-hook; `step_done` is then called for you;
        `count_steps=False`: a framework's counter gives them) and show its learning rate. Raises `TypeError`
        for an object that is no `torch.optim.Optimizer`."""
        if not hasattr(optimizer, "param_groups") or (count_steps and not hasattr(optimizer, "register_step_post_hook")):
            raise TypeError(f"trainmon.track: optimizer must be a torch.optim.Optimizer, not {type(optimizer).__name__}")
        if count_steps:  # False: the steps come from a framework's own counter; only the learning rate is shown
            self._hooks.append(optimizer.register_step_post_hook(self.hot.step_hook))
        self._lr_source = optimizer

    def apply_commands(self) -> None:
        """Apply viewers' commands now, without waiting (a pause waits at the next `safe_point`)."""
        self._fold()
        self._apply_commands()

    def plan_epochs(self, epochs: int) -> None:
        """The run's planned epochs (totals, the epoch bar, which epochs can still take a new batch size)."""
        self.config.epochs = self._totals.epochs = self._batch_sizes.epochs = int(epochs)
        self.core.force_next = True

    @property
    def epoch_open(self) -> bool:
        """An epoch began and has not ended."""
        return self._epoch_open

    @property
    def planned_iterations(self) -> Optional[int]:
        """The current epoch's planned iterations (`None`: unknown)."""
        return self._iterations_planned

    @property
    def next_batch_size(self) -> int:
        """The batch size the next epoch starts with (a pending change and the schedule counted), in samples;
        reading it does not make the batch-size keys live."""
        schedule, index = self._batch_sizes.schedule_from(self.progress.epoch)
        return schedule.at(index)

    @property
    def current_batch_size(self) -> int:
        """This epoch's batch size (samples), without making the keys live."""
        return self._batch_sizes.batch_size

    def _wait_point(self) -> bool:
        """Commands, the pause wait and a granted single step; False when a stop was asked for."""
        self._apply_commands()
        control = self._control
        if control.waiting:
            self.core.wait_paused(self._next_command, self._handle)
        self.core.take_step()
        if control.stopping:
            return False
        if self.status == msg.STARTING:
            self.status = msg.RUNNING
        return True

    def validation(self, loss: Optional[float] = None, metrics: Optional[dict] = None) -> None:
        """The current epoch's validation: mean `loss` and other `metrics` (name → number)."""
        self._fold()
        clean = {}
        for key, value in (metrics or {}).items():
            try:
                clean[str(key)] = float(value)
            except (TypeError, ValueError):
                continue
        self._losses.record_validation(None if loss is None else float(loss), clean)
        self.core.force_next = True
        self._publish()

    def warn(self, message: str, stderr: bool = False) -> None:
        """One warning for viewers and the run's event log; `stderr`: on the script's stderr too (a mistake
        in the script's use of trainmon, which its author should see where they look)."""
        self.core.warn(message, stderr)

    # ------------------------------------------------------------------------------------------
    # inside
    # ------------------------------------------------------------------------------------------
    def _open_window(self) -> None:
        self._open_window_at(self._progress.iteration_in_epoch)

    def _open_window_at(self, iteration_in_epoch: int) -> None:
        self.core.apply_pending_accum()
        self._window.open(iteration_in_epoch, self._iterations_planned, self.dataset_size,
                          self._batch_sizes.batch_size, self.drop_last, exact=self._batch_size_known)
        self._window_open = True

    def _apply_commands(self) -> None:
        for command in self.channel.poll_commands():
            self._handle(command)

    def _handle(self, command: Any) -> None:
        self.core.handle(command)

    def _next_command(self, timeout: float) -> list:
        command = self.channel.wait_command(timeout=timeout)
        return [] if command is None else [command]

    def _lr(self) -> Optional[float]:
        groups = getattr(self._lr_source, "param_groups", None) or []
        return float(groups[0]["lr"]) if groups else None

    def _publish(self, force: bool = False, min_interval: Optional[float] = None) -> None:
        self.core.publish(force, min_interval)

    def _snapshot(self, now: float, active: float) -> msg.Snapshot:
        p = self._progress
        schedule, index = self._batch_sizes.schedule_from(p.epoch)
        total_it, total_steps, total_samples, steps_epoch = self._totals.totals(
            p, self._window.size, self._window.next_accum, schedule, index)
        n, b = self._totals.iterations_in_epoch, self._batch_sizes.batch_size
        s_epoch = None if n is None else -(-n // self._window.accum)
        total_steps, total_it, total_samples = steps_cut(
            total_steps, total_it, total_samples, self.max_steps,
            (n, s_epoch, self.dataset_size if self.dataset_size is not None else None, self._window.accum, b))
        devices = self.core.devices()
        groups = getattr(self._lr_source, "param_groups", None) or []
        return build_snapshot(
            now=now, active=active, job=self.name, device=self.device, config=self.config,
            dataset_size=self.dataset_size if self._batch_size_known else None, progress=p, control=self._control,
            batch_sizes=self._batch_sizes, window=self._window, losses=self._losses, speed=self._speed,
            totals=(total_it, total_steps, total_samples, steps_epoch), iterations_in_epoch=n, lr=self._lr(),
            devices=devices, history_version=self.loss_history.version,
            learning_rates=tuple(float(g["lr"]) for g in groups), tracked=True,
        )
