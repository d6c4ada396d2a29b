"""Time and speed of a run: wall, active, paused and set-aside seconds, one rate and the ETA.

Torch-free; every time is a reading of the caller's clock, in seconds. Speed and ETA come from one
rate (`progress.EtaEstimator`) measured over training time only: paused time, validation and checkpoint
saves are left out of it and counted apart, so a run that validates for a minute each epoch does not
look slow, and its ETA is the training still to do (the snapshot shows the time set aside beside it).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from trainmon.engine.core.progress import EtaEstimator

ASIDE_KINDS = ("validation", "checkpoint")  # time that is neither training nor paused, counted apart


class Speed:
    """Times and the run's one rate.

    State (`state_dict`): `started` (clock reading at the run's start), `paused_total` (seconds of
    finished pauses), `pause_began` (clock reading, or `None` when not paused), `aside` (seconds of
    validation and checkpoint saves, by kind), `epoch_mark` (training-plus-aside seconds at the last
    epoch's end, or `None` when unknown, as after a mid-epoch resume), `epoch_seconds` (the last full
    epoch's time, pauses left out) and `eta` (the estimator's).
    """

    def __init__(self, warmup_iterations: int = 5) -> None:
        self.started = 0.0
        self.paused_total = 0.0
        self.pause_began: Optional[float] = None
        self.aside: dict[str, float] = dict.fromkeys(ASIDE_KINDS, 0.0)
        self._aside_began: Optional[float] = None
        self.aside_kind: Optional[str] = None  # the set-aside going on (the heartbeat reads it: validating, saving)
        self.epoch_mark: Optional[float] = 0.0
        self.epoch_seconds: Optional[float] = None
        self.eta = EtaEstimator(warmup_iterations)

    def start(self, now: float) -> None:
        self.started = now

    def restart(self, now: float, active: float, global_iteration: int) -> None:
        """A resumed run in a new process: go on counting active time from `active` seconds (the gap while
        stopped is not counted); the rate is measured again, from this session's iterations only."""
        self.started, self.paused_total, self.pause_began = now - active, 0.0, None
        self.aside = dict.fromkeys(ASIDE_KINDS, 0.0)
        self.epoch_mark = None  # this epoch began in another process
        self.eta.reset(global_iteration)

    def pause(self, now: float) -> None:
        self.pause_began = now

    def resume(self, now: float) -> None:
        if self.pause_began is not None:
            self.paused_total += now - self.pause_began
            self.pause_began = None

    @contextmanager
    def set_aside(self, kind: str, clock: Callable[[], float]) -> Iterator[None]:
        """`with speed.set_aside("validation", clock):` — the time inside is left out of the rate and
        the ETA and counted under `kind` (one of `ASIDE_KINDS`)."""
        began = self._aside_began = clock()
        self.aside_kind = kind
        try:
            yield
        finally:
            self._aside_began = self.aside_kind = None
            self.aside[kind] = self.aside.get(kind, 0.0) + max(0.0, clock() - began)

    def elapsed(self, now: float) -> float:
        """Wall seconds since the start."""
        return now - self.started

    def active(self, now: float) -> float:
        """Seconds since the start less every pause (the one going on included)."""
        paused = self.paused_total + (now - self.pause_began if self.pause_began is not None else 0.0)
        return max(0.0, now - self.started - paused)

    def training(self, now: float) -> float:
        """Active seconds less validation and checkpoint time (a set-aside going on included)."""
        ongoing = now - self._aside_began if self._aside_began is not None else 0.0
        return max(0.0, self.active(now) - sum(self.aside.values()) - ongoing)

    def epoch_ended(self, now: float, global_iteration: Optional[int] = None, samples_seen: Optional[int] = None) -> None:
        """An epoch ended: its time is the active seconds since the last epoch's end (training, validation
        and saves; pauses left out). With the counters, the rate takes the epoch's last point too, so the
        epoch's figures do not hang on how often the loop published (2 a second where nobody watches)."""
        if global_iteration is not None and samples_seen is not None:
            self.update(global_iteration, samples_seen, self.training(now))
        active = self.active(now)
        if self.epoch_mark is not None:
            self.epoch_seconds = active - self.epoch_mark
        self.epoch_mark = active

    def update(self, global_iteration: int, samples_seen: int, training: float) -> None:
        """Feed the rate with the counters at `training` seconds of training time."""
        self.eta.update(global_iteration, samples_seen, training)

    @property
    def iterations_per_second(self) -> Optional[float]:
        """The measured rate (also before it is `settled`: ranks space their agreements by it)."""
        return self.eta.iterations_per_second

    @property
    def samples_per_second(self) -> Optional[float]:
        return self.eta.samples_per_second

    @property
    def settled(self) -> bool:
        return self.eta.settled

    def reset_eta(self, global_iteration: int) -> None:
        """A new speed regime (a new batch size): the rate is measured again after warm-up."""
        self.eta.reset(global_iteration)

    def state_dict(self) -> dict:
        return {"started": self.started, "paused_total": self.paused_total, "pause_began": self.pause_began,
                "aside": dict(self.aside), "epoch_mark": self.epoch_mark, "epoch_seconds": self.epoch_seconds,
                "eta": self.eta.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.started, self.paused_total, self.pause_began = state["started"], state["paused_total"], state["pause_began"]
        self.aside = dict.fromkeys(ASIDE_KINDS, 0.0) | dict(state.get("aside", {}))
        self.epoch_mark, self.epoch_seconds = state.get("epoch_mark", 0.0), state.get("epoch_seconds")
        self.eta.load_state_dict(state["eta"])
