"""Where a loop's time goes and whether it still moves: the sums behind `data_wait=` / `monitor=`, the
liveness a heartbeat reads, and the `input_bound` / `throughput_drop` alerts.

The hot loop leaves three things on its `HotPath` per iteration (two clock reads): `asked` (it asked for
the next batch), `handed` (it got it) and `wait` (their differences, summed). Everything else happens here,
in bulk, when a span of iterations is folded (≤ 10 a second) or an epoch ends. `monitor` is measured: the
time spent inside trainmon's calls at the loop's check points (folds, publications, commands; a pause's
wait is not counted), over the loop time. The per-iteration flag test, counter add, `run.log` append and
the two clock reads themselves (~0.2 µs an iteration, see benchmarks/per_iteration.py) are not timed, nor
are epoch boundaries. Clock: `time.perf_counter` (the hot path's). No torch, no textual.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Optional

from trainmon.engine.core import health
from trainmon.engine.core.liveness import (
    IterationPace,
    Liveness,
    phase_of,
    share,
    stall_threshold,
)
from trainmon.engine.core.status import RUNNING as RUNNING_STATUS
from trainmon.engine.core.status import STARTING as STARTING_STATUS
from trainmon.engine.run.hot import HotPath

clock = time.perf_counter


class LoopHealth:
    """One run's loop timing and liveness (see the module docstring). `hot`: the run's `HotPath`; `core`:
    its `RunCore` (alerts, settings, the pause state). `validating` / `saving`: set by a loop kind that
    knows (the built-in Trainer); a tracked loop's validation is outside its batches."""

    def __init__(self, hot: Any, core: Any) -> None:
        self.hot, self.core = hot if hot is not None else HotPath(), core
        self.pace = IterationPace()
        self.started = self.left = clock()
        self.last_iteration: Optional[float] = None
        self.mark: Optional[float] = None  # start of the current span, inside a batches loop
        self.in_loop = False
        self.validating = self.saving = False
        self.epoch_wait = self.epoch_loop = self.epoch_monitor = 0.0
        self.last_epoch: tuple[Optional[float], Optional[float]] = (None, None)  # (data_wait, monitor)
        self._win = [0.0, 0.0, 0]  # the window's wait (s), loop (s), samples
        self.throughput = health.ThroughputWatch()
        self._seen = (0, 0)  # (global iteration, samples seen) at the last `caught_up`
        self._set_aside = 0.0  # paused and set-aside seconds at the last `checked`
        self.excused = 0.0  # when a phase that is no stall (paused, validating, saving, starting) was last seen
        self.stall_seen = False  # a stall was seen since the last input-bound judgement of a window
        self.epoch_stalled = False  # ... since the epoch began (its end judges the epoch's loop time)
        self.unfolded_samples: Optional[Callable[[int], int]] = None  # the loop kind's: samples of n unfolded iterations

    # ---- the loop's thread -------------------------------------------------------------------
    def loop_began(self) -> None:
        """A batches loop starts: its spans count as loop time from now."""
        now = clock()
        hot = self.hot
        hot.asked = hot.handed = now
        hot.wait = 0.0
        self.mark, self.in_loop = now, True

    def loop_ended(self) -> None:
        if self.in_loop:
            self.span(0, 0)
        self.in_loop, self.mark = False, None
        self.left = clock()

    def span(self, n: int, samples: int) -> None:
        """`n` iterations (`samples` samples) were folded: their loop time and data wait are summed."""
        now = clock()
        hot = self.hot
        wait, hot.wait = hot.wait, 0.0
        if n:
            self.last_iteration = now
        if self.mark is None:
            return
        seconds, self.mark = now - self.mark, now
        self.pace.add(n, seconds)
        self.epoch_wait += wait
        self.epoch_loop += seconds
        win = self._win
        win[0] += wait
        win[1] += seconds
        win[2] += samples
        if win[1] >= health.WINDOW:
            self._judge_window()

    def checked(self, seconds: float) -> None:
        """A call into trainmon took `seconds`; a pause waited or a checkpoint saved meanwhile is not
        trainmon's overhead (left out), and the span restarts after a pause (no loop time)."""
        speed = self.core.speed
        aside = speed.paused_total + speed.aside.get("checkpoint", 0.0)
        if aside != self._set_aside:
            seconds = max(0.0, seconds - (aside - self._set_aside))
            self._set_aside = aside
            if self.mark is not None:
                self.mark = clock()
        self.epoch_monitor += seconds

    def timed(self, batches: Iterator[Any]) -> Iterator[Any]:
        """`batches` with the time spent waiting for each one stamped (a loop kind without a hot path: the
        built-in Trainer); a batches loop begins."""
        self.loop_began()
        hot = self.hot
        while True:
            hot.asked = asked = clock()
            try:
                batch = next(batches)
            except StopIteration:
                return
            hot.handed = handed = clock()
            hot.wait += handed - asked
            yield batch

    def caught_up(self, global_iteration: int, samples_seen: int) -> None:
        """A loop kind that counts on its own (the Trainer): the iterations and samples since the last call
        make a span."""
        n, samples = global_iteration - self._seen[0], samples_seen - self._seen[1]
        self._seen = (global_iteration, samples_seen)
        if n > 0:
            self.span(n, samples)

    def live_counts(self, last: Any) -> dict[str, Any]:
        """The counters a republication carries (the heartbeat's thread, no lock): the loop's units plus the
        iterations its hot path completed since the last fold (`hot.n`; samples from `unfolded_samples`, the
        loop kind's; the optimizer steps after them), so a snapshot republished during a stall names the
        iteration the stall alert names. `last`: the last published snapshot; a run over several ranks keeps
        its counts (they sum ranks). Read while the loop may fold: at worst one beat shows the counts of just before the fold."""
        if last.world_size > 1:
            return {}
        hot, p = self.hot, self.core.progress
        n, steps = hot.n, hot.steps
        samples = self.unfolded_samples(n) if n and self.unfolded_samples is not None else 0
        stepped = sum(1 for s in steps if s <= n) if steps else 0  # optimizer steps after completed iterations
        counts = {"epoch": p.epoch, "global_iteration": p.global_iteration + n,
                  "iteration_in_epoch": p.iteration_in_epoch + n, "samples_seen": p.samples_seen + samples,
                  "global_step": p.global_step + stepped, "steps_in_epoch": p.steps_in_epoch + stepped}
        if n and last.status == STARTING_STATUS:
            counts["status"] = RUNNING_STATUS  # iterations completed: the run is past its start
        return counts

    def heartbeat(self) -> Any:
        """Start the run's heartbeat thread (engine/run/heartbeat.py); it ends with the run."""
        from trainmon.engine.run.heartbeat import Heartbeat

        return Heartbeat(self.core).start()

    def iteration_done(self) -> None:
        """An iteration reported by the slow path (framework callbacks): it moves; the time since the one
        before is its pace (the framework's loop fetches its batches itself: no data wait is known)."""
        now = clock()
        if self.last_iteration is not None and self.in_loop and self.mark is None:
            self.pace.add(1, now - self.last_iteration)
        self.last_iteration = now
        if self.mark is None:  # not a hot loop's: the slow path counts as inside the loop until the epoch ends
            self.in_loop = True
            self.hot.asked = self.hot.handed = now

    def epoch_ended(self) -> tuple[Optional[float], Optional[float]]:
        """The epoch's `(data_wait, monitor)` shares of its loop time (`None` without a batches loop), judged
        for `input_bound`; the sums restart."""
        if self.mark is None and self.in_loop:  # the slow path's epoch ended: what follows is outside it
            self.in_loop, self.left = False, clock()
        wait, loop, monitor = self.epoch_wait, self.epoch_loop, self.epoch_monitor
        self.epoch_wait = self.epoch_loop = self.epoch_monitor = 0.0
        figures = (share(wait, loop), share(monitor, loop))
        if figures[0] is not None:
            self.last_epoch = figures
            win = self._win
            if win[1] < health.WINDOW:  # the epoch's end closes a window early only when the epoch judges
                stalled, self.stall_seen = self.stall_seen or self.epoch_stalled, False
                self._input_bound(wait, loop, stalled)
        self.epoch_stalled = False
        return figures

    def batch_size_changed(self) -> None:
        self.throughput.reset()
        self._win = [0.0, 0.0, 0]

    def _judge_window(self) -> None:
        wait, loop, samples = self._win
        self._win = [0.0, 0.0, 0]
        stalled, self.stall_seen = self.stall_seen, False
        self._input_bound(wait, loop, stalled)
        settings = self.core.alerts.settings
        typical = self.throughput.minute(samples, loop, settings.throughput_drop_fraction)
        if typical is not None:
            self.core.alert("throughput_drop", health.throughput_message(samples / loop, typical))
        else:
            self.core.alerts.clear("throughput_drop")

    def saw_stall(self) -> None:
        """A heartbeat found the loop stalled: the window and the epoch it falls in are not judged input-bound."""
        self.stall_seen = self.epoch_stalled = True

    def _input_bound(self, wait: float, loop: float, stalled: bool) -> None:
        """`input_bound` judged over `wait` of `loop` seconds; not raised for a stretch that `stalled`."""
        bound = health.is_input_bound(wait, loop, self.core.alerts.settings.input_bound_fraction)
        if bound and stalled:  # one loader that hung: the `stall` alert said it; more workers would not help
            return
        if bound:
            self.core.alert("input_bound", health.input_bound_message(wait / loop))
        elif bound is False:
            self.core.alerts.clear("input_bound")

    # ---- any thread (the heartbeat's, a publication) -----------------------------------------
    def liveness(self) -> Liveness:
        """The run's phase now, from the stamps the loop left (read without a lock: floats and flags)."""
        now = clock()
        hot, aside = self.hot, self.core.speed.aside_kind
        starting = self.core.control.status == STARTING_STATUS
        if starting:
            self.started = now  # the wait for a first iteration counts from the end of the set-up
        slowest = self.pace.slowest
        if slowest is None and (self.hot.n or self.last_iteration is not None):
            slowest = 0.0  # iterations ran before any fold timed them: past start-up, the floor holds
        stall_after = stall_threshold(self.core.alerts.settings.stall_after, slowest)
        outside_after = stall_threshold(self.core.alerts.settings.stall_after, slowest, outside=True)
        last = self.last_iteration
        in_loop = self.in_loop
        if in_loop and hot.asked > (last or self.started) and self.mark is not None and hot.asked > self.mark:
            last = hot.asked if last is None or hot.asked > last else last  # asking again: the last one is done
        paused, validating = self.core.control.paused, self.validating or aside == "validation"
        saving = self.saving or aside == "checkpoint"
        if starting or paused or validating or saving:
            self.excused = now  # a phase that is no stall: the wait for the next iteration counts from its end
        basis = last if last is None or self.excused <= last else self.excused
        phase, since = phase_of(now, in_loop=in_loop, asked=hot.asked, handed=hot.handed, left=self.left,
                                last_iteration=basis, started=self.started, slowest=slowest, stall_after=stall_after,
                                paused=paused, validating=validating, saving=saving, starting=starting,
                                outside_after=outside_after)
        if phase == "stalled":
            self.saw_stall()
        if self.epoch_loop >= health.MIN_JUDGED:
            data_wait, monitor = share(self.epoch_wait, self.epoch_loop), share(self.epoch_monitor, self.epoch_loop)
        else:
            data_wait, monitor = self.last_epoch
        return Liveness(phase=phase, phase_seconds=max(0.0, now - since),
                        iteration_age=None if last is None else max(0.0, now - last), stall_after=stall_after,
                        data_wait=data_wait, monitor=monitor, beat=time.time())
