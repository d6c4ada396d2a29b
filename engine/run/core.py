"""The run core: the units every kind of loop keeps, and the rules over them written once.

The built-in `Trainer` (engine/run/trainer.py) and the `Tracker` behind `trainmon.track()` and the framework
callbacks (engine/run/tracker.py) each hold one `RunCore`. It owns the counters (`Progress`), the batch-size
policy, the accumulation window, pause/step/stop (`RunControl`), the losses and their history, speed and
ETA, the planned totals, device telemetry, and publication: the rate limit, the loss read in bulk, the
snapshot and history delta handed to the channel, the commands applied or refused, the pause wait, the
warnings and the run's last event. A loop kind supplies only its own figures (`snapshot`) and the bulk
work it keeps for publication (`before_publish`).

No textual; torch only through `LossTracker` (a run's losses are tensors).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Optional

import msgspec

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.core.alerts import Alerts, AlertSettings
from trainmon.engine.core.history import History, HistoryDelta
from trainmon.engine.core.loss_spike import LossSpikes
from trainmon.engine.core.memory_alert import memory_levels
from trainmon.engine.core.progress import Progress
from trainmon.engine.core.run_control import RunControl
from trainmon.engine.core.schedule import BatchSizePolicy
from trainmon.engine.core.speed import Speed
from trainmon.engine.core.throughput import ThroughputMeter
from trainmon.engine.core.timeline import Timeline, timeline_row
from trainmon.engine.core.totals import PlannedTotals
from trainmon.engine.core.window import AccumulationWindow
from trainmon.engine.run.losses import LossTracker


class RunCore:
    """One run's units and shared rules (see the module docstring).

    `channel`: where snapshots and events go (its sinks: the run directory, the control socket).
    `batch_sizes` / `window`: the loop kind's batch-size policy and accumulation window. `dataset_size`
    (samples, `None`: unknown), `epochs` and `drop_last` plan the totals. `clock` gives seconds
    (monotonic); at most one snapshot every `publish_interval` seconds unless forced (every
    `IDLE_INTERVAL` while nobody watches live: `Channel.watched`); the first
    `warmup_iterations` are left out of the ETA. `sampler`: device telemetry with `latest()` (or `None`).
    `snapshot(now, active)` builds the loop kind's `Snapshot`; `before_publish()` runs before each.
    `alerts`: the user's alert settings (default: `TRAINMON_ALERTS`, else all on); `alert()` raises one.
    """

    EPOCH_SAMPLE_GAP = 1.0  # seconds: an epoch's end samples telemetry unless a sample is this fresh, and
    # resets the epoch's peaks unless they were reset this recently (~0.8 ms the pair in a process holding
    # torch: at 40 epochs a second, 4 a second took 0.3 % of the loop; epochs under a second share peaks)
    IDLE_INTERVAL = 0.5  # seconds between publications while no viewer watches (the run directory, headless)

    def __init__(self, channel: Channel, batch_sizes: BatchSizePolicy, window: AccumulationWindow, *,
                 dataset_size: Optional[int], epochs: int, drop_last: bool, clock: Callable[[], float],
                 publish_interval: float = 0.1, warmup_iterations: int = 5, sampler: Any = None,
                 alerts: Optional[AlertSettings] = None) -> None:
        self.channel, self.clock, self.publish_interval = channel, clock, publish_interval
        self.progress = Progress()
        self.loss_history = History()
        self.batch_sizes, self.window = batch_sizes, window
        self.control = RunControl(batch_sizes, window)
        self.losses = LossTracker(self.loss_history)
        self.speed = Speed(warmup_iterations)
        self.totals = PlannedTotals(dataset_size, epochs, drop_last)
        self.sampler = sampler
        self.alerts = Alerts(alerts if alerts is not None else AlertSettings.from_env(), clock)
        self.spikes = LossSpikes(self.alerts.settings.loss_spike_factor)
        self._spikes_version = 0  # the loss history's version the spike rule has read up to
        self.snapshot: Callable[[float, float], msg.Snapshot] = _no_snapshot
        self.before_publish: Optional[Callable[[], None]] = None
        self.force_next = False  # publish at the next chance, whatever the rate limit
        self.last_publish = -math.inf
        self._peaks_reset = -math.inf
        self._last_peak: Optional[tuple[float, Any]] = None  # (clock, epoch_peak()) of the newest read
        self.sent_version = 0  # the history version viewers have (0 after a restore: they get it whole)
        self.health: Any = None  # a loop kind's `LoopHealth` (liveness, where the time goes), if it keeps one
        self.throughput = ThroughputMeter()  # the job's units: tokens, FLOPs (engine/core/throughput.py)
        self.last_snapshot: Optional[msg.Snapshot] = None
        self.timeline = Timeline()  # one row a publication: the other charts and x axes (engine/core/timeline.py)
        self.sent_timeline = 0  # the timeline version viewers have (0 after a restore: they get it whole)

    # ---- publication ---------------------------------------------------------------------------
    def publish(self, force: bool = False, min_interval: Optional[float] = None) -> None:
        """Publish a snapshot and the history since the last one when `min_interval` (default
        `publish_interval`) seconds have passed, or when forced; cheap to call every iteration."""
        now = self.clock()
        interval = self.publish_interval if min_interval is None else min_interval
        if not force and not self.force_next:
            since = now - self.last_publish
            if since < interval or (since < self.IDLE_INTERVAL and min_interval is None and interval > 0
                                    and not self.channel.watched()):
                return
        self.force_next = False
        self.last_publish = now
        if self.before_publish is not None:
            self.before_publish()
        self.flush_losses()
        self.memory_alerts()
        active = self.speed.active(now)
        p = self.progress
        self.speed.update(p.global_iteration, p.samples_seen, self.speed.training(now))
        snapshot = self.snapshot(now, active)
        parts: dict[str, Any] = {"throughput": self.throughput.figures(
            snapshot.samples_per_second, snapshot.world_size, snapshot.precision)}
        if self.health is not None:  # the heartbeat's part: phase, age of the last iteration, time shares
            parts["liveness"] = self.health.liveness()
        snapshot = msgspec.structs.replace(snapshot, **parts)  # one copy of the snapshot, not one a part
        self.timeline.append(timeline_row(snapshot, time.time(), self._tokens_seen(snapshot)))
        with self.channel.lock:
            delta = self.loss_history.since(self.sent_version)
            self.sent_version = delta.version
            rows = self.timeline.since(self.sent_timeline)
            self.sent_timeline = rows.version
            self.last_snapshot = snapshot
            self.channel.publish(snapshot, delta, rows)

    def _tokens_seen(self, snapshot: msg.Snapshot) -> Optional[float]:
        """Tokens seen where the job counts them: samples seen × its tokens per sample so far (on one rank
        without a resume, exactly the tokens it logged)."""
        meter = self.throughput
        if meter.unit != "tokens" or meter.counted_samples <= 0:
            return None
        return snapshot.samples_seen * meter.counted / meter.counted_samples

    def interval_now(self) -> float:
        """Seconds between publications right now: `publish_interval` while a viewer watches live (or when it is
        0, a publication at every iteration), else `IDLE_INTERVAL` at least (a fold, a snapshot and a write
        fewer a second where nobody looks; a viewer that attaches gets the fast rate from its next tick)."""
        base = self.publish_interval
        if base > 0 and not self.channel.watched():
            return max(base, self.IDLE_INTERVAL)
        return base

    def republish(self, liveness: Any) -> None:
        """The last snapshot again with a fresh `liveness`, elapsed and active time, the loop's latest counts
        (`LoopHealth.live_counts`) and no new history (the heartbeat's thread, under the channel's lock, while
        the loop publishes nothing)."""
        last = self.last_snapshot
        if last is not None:
            now = self.clock()  # time moves while the loop is stuck; so do the counts its hot path left unfolded
            counts = self.health.live_counts(last) if self.health is not None else {}
            self.last_snapshot = msgspec.structs.replace(last, liveness=liveness, elapsed=self.speed.elapsed(now),
                                                         active_seconds=self.speed.active(now), **counts)
            self.channel.publish(self.last_snapshot, HistoryDelta(self.sent_version, []))

    def flush_losses(self) -> None:
        """Read every loss since the last publication in one transfer; a NaN or Inf is an event."""
        self.nonfinite_losses(self.losses.flush())

    def nonfinite_losses(self, flagged: list[tuple[int, float]]) -> None:
        """The losses just read that were NaN or Inf (`(global_iteration, value)`): an event each, and one
        `nan` alert while the loss stays non-finite (it may come again once a finite loss was read)."""
        for global_iteration, value in flagged:
            self.channel.emit(msg.NonFiniteLoss(global_iteration, self.progress.epoch, value))
        if flagged:
            global_iteration, value = flagged[0]
            self.alert("nan", f"the loss is {value} at global iteration {global_iteration}: the run diverged "
                              f"(lower the learning rate, clip gradients, check the data)", at=global_iteration)
        elif self.losses.last is not None and math.isfinite(self.losses.last):
            self.alerts.clear("nan")
        self.loss_spikes()

    def loss_spikes(self) -> None:
        """The losses read since the last call, checked in bulk for a spike (`engine.core.loss_spike`): one
        `loss_spike` alert per episode, which ends at a read without a spike."""
        if not self.alerts.settings.wants("loss_spike"):
            return
        delta = self.loss_history.since(self._spikes_version)
        self._spikes_version = delta.version
        if delta.reset or not delta.points:  # a restored history: its points are averages, not losses
            return
        spike = self.spikes.check(delta.points)
        if spike is not None:
            self.alert("loss_spike", spike.message, at=spike.global_iteration)
        else:
            self.alerts.clear("loss_spike")

    def memory_alerts(self) -> None:
        """One `memory` alert per GPU while its memory in use is ≥ `memory_fraction` of its total (the newest
        telemetry sample, at publication); cleared below."""
        if self.sampler is None or not self.alerts.settings.wants("memory"):
            return
        sample = self.devices()
        if sample is None:
            return
        for key, message in memory_levels(sample, self.alerts.settings.memory_fraction):
            if message is not None:
                self.alert("memory", message, key=key)
            else:
                self.alerts.clear("memory", key)

    def alert(self, kind: str, message: str, key: str = "", at: Optional[int] = None, rank: Optional[int] = None,
              host: Optional[str] = None) -> bool:
        """Raise alert `kind` (see `engine.core.alerts`) unless it is off or already raised for this
        condition (`key`); `at`: its global iteration (default the current one). True when it fired."""
        if not self.alerts.fire(kind, key):
            return False
        p = self.progress
        self.channel.emit(msg.Alert(kind, message, p.epoch, p.global_iteration if at is None else at, time.time(),
                                    rank, host))
        return True

    def devices(self) -> Any:
        """The newest telemetry sample, `None` without a sampler or when it fails (never raises). Before the
        sampler's thread has taken one (a loaded box: the first publication can come first), one is taken
        here, so that no published row lacks host memory."""
        if self.sampler is None:
            return None
        try:
            return self.sampler.latest() or self.sampler.sample_once()
        except Exception:  # noqa: BLE001 - telemetry never breaks a run
            return None

    def epoch_peak(self) -> Any:
        """One telemetry sample at the epoch boundary (never inside an iteration) and the epoch's peak
        memory; `None` without a sampler or when it fails."""
        if self.sampler is None:
            return None
        try:
            latest = self.sampler.latest()
            now = getattr(self.sampler, "clock", self.clock)()  # the sampler's clock stamped its samples
            if latest is None or now - latest.time >= self.EPOCH_SAMPLE_GAP:
                self.sampler.sample_once()  # on the loop's thread: at most 1 a second, for tiny epochs
            elif self._last_peak is not None and self._peaks_reset < self._last_peak[0]:
                # epochs under EPOCH_SAMPLE_GAP share their peaks (not reset since the last read: see
                # begin_epoch_telemetry); reading VmHWM again costs ~0.2 ms in a process holding torch
                return self._last_peak[1]
            peak = self.sampler.epoch_peak()
            self._last_peak = (self.clock(), peak)
            return peak
        except Exception:  # noqa: BLE001 - telemetry never breaks a run
            return None

    def begin_epoch_telemetry(self) -> None:
        """New epoch peaks, unless the last reset is under `EPOCH_SAMPLE_GAP` old: resetting the kernel's
        high-water mark costs ~0.3 ms in a process holding torch, so the peaks of epochs that short cover
        the few epochs before them too (an upper bound)."""
        if self.sampler is None or not hasattr(self.sampler, "begin_epoch"):
            return
        now = self.clock()
        if now - self._peaks_reset >= self.EPOCH_SAMPLE_GAP:
            self._peaks_reset = now
            self.sampler.begin_epoch()

    # ---- commands, pause, windows --------------------------------------------------------------
    def handle(self, command: Any) -> bool:
        """Apply one viewer's command or refuse it with a reason, emitting the answer (published at once
        when accepted); True when accepted. Never raises."""
        p = self.progress
        events = self.control.handle(command, p.epoch, p.global_iteration)
        for event in events:
            self.channel.emit(event)
        accepted = isinstance(events[-1], msg.CommandAccepted)
        if accepted:
            self.publish(force=True)
        return accepted

    def wait_paused(self, next_commands: Callable[[float], list], on_command: Callable[[Any], None]) -> None:
        """At a safe point while a pause is asked for and no single step is granted: announce it, then wait,
        handing each command to `on_command`, until resumed, stepped or stopped; time paused is left out
        of the ETA. `next_commands(timeout)` gives the commands that came within `timeout` seconds."""
        control = self.control
        paused = control.announce_pause(self.progress.global_iteration)
        if paused is not None:
            self.channel.emit(paused)
        self.publish(force=True)
        self.speed.pause(self.clock())
        while control.waiting:
            commands = next_commands(0.2)
            for command in commands:
                on_command(command)
            if not commands:
                self.publish(min_interval=1.0)  # elapsed time keeps moving for viewers
        self.speed.resume(self.clock())

    def take_step(self) -> None:
        """Use a granted single step (paused): the stepped iteration is shown as soon as it is done."""
        if self.control.take_step():
            self.force_next = True

    def apply_pending_accum(self) -> None:
        """At a window start: a pending accumulation change applies, announced and published."""
        changed = self.window.apply_pending()
        if changed is not None:
            p = self.progress
            self.channel.emit(msg.AccumChanged(*changed, p.epoch, p.global_iteration))
            self.force_next = True

    def warn(self, message: str, stderr: bool = False) -> None:
        """One warning for viewers and the run's event log; `stderr`: on the process's stderr too."""
        p = self.progress
        self.channel.emit(msg.Warned(message, p.epoch, p.global_iteration))
        if stderr:
            print(f"trainmon: warning: {message}", file=sys.stderr, flush=True)

    # ---- the run's end -----------------------------------------------------------------------
    def finished(self, stopped: bool, samples_seen: Optional[int] = None) -> msg.Finished:
        """The `Finished` event of a run that ended (stopped or not), emitted; `samples_seen` where the
        run's count is not this process's (ranks)."""
        p, losses = self.progress, self.losses
        event = msg.Finished(
            stopped=stopped, epochs_completed=self.totals.epochs_completed, global_iteration=p.global_iteration,
            global_step=p.global_step, samples_seen=p.samples_seen if samples_seen is None else samples_seen,
            elapsed=self.speed.elapsed(self.clock()), train_loss=losses.epoch_loss, val_loss=losses.val_loss,
            val_metrics=dict(losses.val_metrics),
        )
        self.channel.emit(event)
        return event


def _no_snapshot(now: float, active: float) -> msg.Snapshot:
    raise RuntimeError("RunCore.snapshot was not set by the loop kind")
