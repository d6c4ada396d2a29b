"""Time and speed of a run: wall, active and paused seconds, iteration and sample rates, and the ETA.

Torch-free; every time is a reading of the caller's clock, in seconds. The ETA counts active time
only and leaves out warm-up iterations (`progress.EtaEstimator`).
"""

from __future__ import annotations

from typing import Optional

from trainmon.engine.core.progress import EtaEstimator


class Speed:
    """Rates measured between publications and the time they are measured over.

    State (`state_dict`): `started` (clock reading at the run's start), `paused_total` (seconds of
    finished pauses), `pause_began` (clock reading, or `None` when not paused), `mark`
    (`[global iteration, samples seen, active seconds]` at the last rate measurement, or `None`),
    `iterations_per_second` / `samples_per_second` (smoothed, or `None`) and `eta` (the estimator's).
    """

    SMOOTHING = 0.5  # weight of the newest measurement in the exponential smoothing of the rates
    MIN_SECONDS = 0.05  # shortest active time a rate is measured over

    def __init__(self, warmup_iterations: int = 5) -> None:
        self.started = 0.0
        self.paused_total = 0.0
        self.pause_began: Optional[float] = None
        self.mark: Optional[list] = None
        self.iterations_per_second: Optional[float] = None
        self.samples_per_second: Optional[float] = None
        self.eta = EtaEstimator(warmup_iterations)

    def start(self, now: float) -> None:
        self.started = now

    def pause(self, now: float) -> None:
        self.pause_began = now

    def resume(self, now: float) -> None:
        if self.pause_began is not None:
            self.paused_total += now - self.pause_began
            self.pause_began = None

    def elapsed(self, now: float) -> float:
        """Wall seconds since the start."""
        return now - self.started

    def active(self, now: float) -> float:
        """Seconds since the start less every pause (the one going on included)."""
        paused = self.paused_total + (now - self.pause_began if self.pause_began is not None else 0.0)
        return max(0.0, now - self.started - paused)

    def update(self, global_iteration: int, samples_seen: int, active: float) -> None:
        """Measure the rates since the last mark (once at least `MIN_SECONDS` of active time and one
        iteration passed) and feed the ETA."""
        if self.mark is not None:
            it0, s0, a0 = self.mark
            dt = active - a0
            if dt >= self.MIN_SECONDS and global_iteration > it0:
                ir, sr = (global_iteration - it0) / dt, (samples_seen - s0) / dt
                a = self.SMOOTHING
                self.iterations_per_second = ir if self.iterations_per_second is None else \
                    a * ir + (1 - a) * self.iterations_per_second
                self.samples_per_second = sr if self.samples_per_second is None else \
                    a * sr + (1 - a) * self.samples_per_second
                self.mark = [global_iteration, samples_seen, active]
        else:
            self.mark = [global_iteration, samples_seen, active]
        self.eta.update(global_iteration, samples_seen, active)

    def reset_eta(self, global_iteration: int) -> None:
        """A new speed regime (a new batch size): the ETA measures its rate again after warm-up."""
        self.eta.reset(global_iteration)

    def state_dict(self) -> dict:
        return {"started": self.started, "paused_total": self.paused_total, "pause_began": self.pause_began,
                "mark": None if self.mark is None else list(self.mark),
                "iterations_per_second": self.iterations_per_second, "samples_per_second": self.samples_per_second,
                "eta": self.eta.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.started, self.paused_total, self.pause_began = state["started"], state["paused_total"], state["pause_began"]
        self.mark = None if state["mark"] is None else list(state["mark"])
        self.iterations_per_second, self.samples_per_second = state["iterations_per_second"], state["samples_per_second"]
        self.eta.load_state_dict(state["eta"])
