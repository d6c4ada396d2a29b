"""The heartbeat: a light daemon thread that tells a long iteration, a hung data loader or a stall from
progress, whatever the loop is doing.

Every `interval` seconds it reads the loop's liveness (`LoopHealth.liveness`: a few floats the loop
leaves, no lock); when the loop has not published for `republish_after` seconds (it is stuck in the
user's code, in a loader, in a long validation) it republishes the loop's last snapshot with the fresh
liveness part, so the status line, `ls` and `attach` show the phase and the age of the last iteration.
It raises the `stall` alert while a stall lasts (and a `LivenessChanged` event, `logs` / headless line)
and clears it, with another `LivenessChanged`, when iterations resume. Publication and events go through
the channel's lock: the loop's thread may publish at the same moment.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from trainmon.engine.core.liveness import STALLED, LivenessChanged, short_duration
from trainmon.engine.core.status import RunStatus


class Heartbeat:
    """A thread over `core` (a `RunCore` with `health`, a `LoopHealth`): see the module docstring.
    `start()` returns it; `stop()` ends it within one interval (never raises)."""

    def __init__(self, core: Any, interval: float = 0.5, republish_after: float = 1.0) -> None:
        self.core, self.interval, self.republish_after = core, interval, republish_after
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._phase = ""
        self._stalled_since = 0.0

    def start(self) -> "Heartbeat":
        self._thread = threading.Thread(target=self._run, name="trainmon-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self, beat: bool = True, timeout: float = 2.0) -> None:
        """End the thread and wait for it (at most `timeout` seconds): it holds the run's core, and through it
        the loop (a rank's DDP model, its process group), which must not outlive the run into the
        interpreter's end. `beat`: a last beat first (on the caller's thread), so a stall that just ended is
        told."""
        if beat:
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a heartbeat never breaks a run's end
                pass
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and not RunStatus(self.core.control.status).final:
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a heartbeat never breaks a run; the next one tries again
                pass

    def beat(self) -> None:
        """One heartbeat: the phase, the stall alert, a republication when the loop is quiet."""
        core = self.core
        live = core.health.liveness()
        with core.channel.lock:
            if self._stop.is_set():
                return
            self._phase_changed(live)
            if core.clock() - core.last_publish >= self.republish_after:
                core.republish(live)

    def _phase_changed(self, live: Any) -> None:
        core, p = self.core, self.core.progress
        at = p.global_iteration + core.health.hot.n  # iterations the loop has not folded yet count too
        was, self._phase = self._phase, live.phase
        if live.phase == STALLED and was != STALLED:
            self._stalled_since = time.monotonic() - live.phase_seconds
            core.channel.emit(LivenessChanged(STALLED, was or "training", live.phase_seconds, p.epoch, at))
            core.alert("stall", f"no iteration completed for {short_duration(live.phase_seconds)} "
                                f"(stall_after {live.stall_after:g} s): {_where(was)}", at=at)
        elif was == STALLED and live.phase != STALLED:
            core.channel.emit(LivenessChanged(live.phase, STALLED, time.monotonic() - self._stalled_since, p.epoch, at))
            core.alerts.clear("stall")


def _where(phase: str) -> str:
    """Where the loop was when it stalled, in words."""
    return {"waiting": "the loop waits for its next batch (a slow or hung data loader?)",
            "outside": "the loop is outside its batches (a long validation, or the script's own code)",
            }.get(phase, "the loop is inside an iteration (the script's own code, a hung collective?)")
