"""Liveness: what a run is doing right now, told by a heartbeat that does not depend on the loop's progress.

A hang must not look like progress: the heartbeat thread (engine/run/heartbeat.py) reads a few stamps the
loop leaves (when it asked for its next batch, when it got it, when an iteration last completed) and names
the phase — training, waiting for the next batch, in the user's code, validating, saving a checkpoint,
paused, starting, stalled (lost is the run directory's word: the engine's lock is free). The rules here are pure
arithmetic over those stamps, tested by tables; no torch, no textual.

The stall rule: no iteration completed for `stall_after` seconds — the user's `AlertSettings.stall_after`,
else 10 × the slowest recent iteration (the slowest per-iteration time of the last `IterationPace.KEEP`
folds), at least `STALL_FLOOR` (30 s); outside the batches loop (a tracked script's validation or own code)
at least `OUTSIDE_STALL` (600 s); before the first iteration, `STARTUP_STALL` (300 s: a first batch may
start workers, a first iteration compile). Starting (the run's status before its loop), paused,
validating and saving are phases, never stalls.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Optional

import msgspec

from trainmon.engine.core.message_base import Message
from trainmon.engine.core.status import FINAL_STATES

TRAINING = "training"
WAITING = "waiting"  # for the next batch (inside the loader)
IN_CODE = "in_code"  # in the user's code, no batch asked for
OUTSIDE = "outside"  # the loop is outside its batches (track(): validation, the script's own code)
VALIDATING = "validating"
STARTING = "starting"  # the run sets up (model, loaders, a resume): before its loop, never a stall
SAVING = "saving"
PAUSED = "paused"
STALLED = "stalled"

STALL_FLOOR = 30.0  # seconds (inside the batches loop: a minute-long hang is told while it lasts)
OUTSIDE_STALL = 600.0  # seconds outside the batches loop by default (a tracked loop's validation may be long)
STALL_FACTOR = 10.0  # × the slowest recent iteration
STARTUP_STALL = 300.0  # seconds before the first iteration (default rule only)
TRAINING_GRACE = 2.0  # seconds: an iteration this long (or 3 × the slowest recent) is still "training"


class Liveness(msgspec.Struct, frozen=True):
    """The run's phase by its heartbeat: `phase` (one of the names above), for `phase_seconds`; the age of
    the last completed iteration in seconds (`None` before the first); the `stall_after` in force (s);
    `data_wait` / `monitor`: shares (0..1) of the recent loop time spent waiting for batches / inside
    trainmon (`None` until measured); `beat`: Unix time of the heartbeat that made it."""

    phase: str = TRAINING
    phase_seconds: float = 0.0
    iteration_age: Optional[float] = None
    stall_after: Optional[float] = None
    data_wait: Optional[float] = None
    monitor: Optional[float] = None
    beat: float = 0.0


class LivenessChanged(Message):
    """The run stalled (`phase="stalled"`) or moved again after a stall (`phase` the new one, `seconds` the
    stall's length), at 1-based `epoch` and `global_iteration`."""

    phase: str
    previous: str
    seconds: float
    epoch: int
    global_iteration: int


def stall_threshold(stall_after: Optional[float], slowest: Optional[float], outside: bool = False) -> float:
    """Seconds without a completed iteration that make a stall: the user's `stall_after` when given, else
    `max(STALL_FLOOR, STALL_FACTOR × slowest)` with `slowest` the slowest recent iteration in seconds
    (`None` before the first: `STARTUP_STALL`); `outside` the batches loop (a tracked script's own code between
    epochs: its validation, its saves, which trainmon cannot see) at least `OUTSIDE_STALL`."""
    if stall_after is not None:
        return float(stall_after)
    if slowest is None:
        return STARTUP_STALL
    default = max(STALL_FLOOR, STALL_FACTOR * slowest)
    return max(OUTSIDE_STALL, default) if outside else default


def phase_of(now: float, *, in_loop: bool, asked: float, handed: float, left: float, last_iteration: Optional[float],
             started: float, slowest: Optional[float], stall_after: float, paused: bool = False,
             validating: bool = False, saving: bool = False, starting: bool = False,
             outside_after: Optional[float] = None) -> tuple[str, float]:
    """`(phase, since)`: what the loop does at `now` and since when (same clock, seconds). `in_loop`: inside
    its batches loop, where `asked` / `handed` stamp the newest request for a batch and its delivery
    (`asked > handed`: waiting for it); `left`: when the loop last left its batches; `last_iteration`:
    when an iteration last completed (`None`: none yet, counted from `started`); `outside_after`: the stall
    threshold while outside the batches loop (default `stall_after`)."""
    if paused:
        return PAUSED, now
    if starting:
        return STARTING, started
    if saving:
        return SAVING, now
    if validating:
        return VALIDATING, now
    last = started if last_iteration is None else last_iteration
    if not in_loop:
        phase, since = OUTSIDE, max(left, last)
    elif asked > handed:
        phase, since = WAITING, asked
    else:
        grace = max(TRAINING_GRACE, 3 * slowest) if slowest is not None else TRAINING_GRACE
        phase, since = (TRAINING, last) if now - max(handed, last) < grace else (IN_CODE, max(handed, last))
    limit = stall_after if in_loop or outside_after is None else outside_after
    if now - last >= limit:
        return STALLED, last
    return phase, since


class IterationPace:
    """The slowest recent per-iteration time: `add(n, seconds)` after `n` iterations took `seconds` (a span
    between two folds, pauses left out); `slowest` is the largest mean of the last `KEEP` spans."""

    KEEP = 50

    def __init__(self) -> None:
        self._spans: deque[float] = deque(maxlen=self.KEEP)

    def add(self, n: int, seconds: float) -> None:
        if n > 0 and seconds >= 0:
            self._spans.append(seconds / n)

    @property
    def slowest(self) -> Optional[float]:
        return max(self._spans) if self._spans else None


def short_duration(seconds: float) -> str:
    """`4m12s`, `12s`, `1h03m`: a phase's length, compact (for `ls` and the status line)."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


PHASE_WORDS = {TRAINING: "training", WAITING: "waiting for the next batch", IN_CODE: "in your code",
               OUTSIDE: "outside the batches", VALIDATING: "validating", STARTING: "starting", SAVING: "saving a checkpoint",
               PAUSED: "paused", STALLED: "stalled"}


def phase_text(live: Liveness) -> str:
    """One phrase for a person: `training`, `waiting for the next batch for 12s`, `in your code for 4m12s (no
    batch asked for)`, `stalled 4m12s (no iteration)`."""
    word = PHASE_WORDS.get(live.phase, live.phase)
    if live.phase == TRAINING:
        return word
    if live.phase == STALLED:
        return f"stalled {short_duration(live.phase_seconds)} (no iteration)"
    text = f"{word} for {short_duration(live.phase_seconds)}"
    return text + " (no batch asked for)" if live.phase in (IN_CODE, OUTSIDE) else text


ENDED = frozenset(str(s.value) for s in FINAL_STATES)  # statuses of a run that ended: no phase
SHORT_WORDS = {WAITING: "waiting", IN_CODE: "in code", OUTSIDE: "outside batches"}
QUIET_SHOWN = 10.0  # seconds: a running run waiting or in its own code this long says so in `ls`


def status_word(status: str, phase: Optional[str], seconds: Optional[float]) -> str:
    """`ls`'s STATUS: the run's status; for a running run `stalled 4m12s` while stalled, `running (waiting
    12s)` / `running (in code 4m12s)` once a phase other than training lasts `QUIET_SHOWN` seconds."""
    if status not in ("running", "starting") or phase is None or seconds is None:
        return status
    if phase == STALLED:  # a loop that stalls before its first fold is still "starting" in its snapshot
        return f"stalled {short_duration(seconds)}"
    if status == "starting":
        return status
    if phase in SHORT_WORDS and seconds >= QUIET_SHOWN:
        return f"running ({SHORT_WORDS[phase]} {short_duration(seconds)})"
    return status


def aged(live: Optional[Liveness], status: str, now: float) -> tuple[Optional[str], Optional[float], Optional[float]]:
    """`(phase, phase_seconds, iteration_age)` of a recorded liveness read at Unix time `now`: a running
    run's figures grow by the time since its heartbeat wrote them; `(None, None, None)` without one. A run
    that ended has no phase: its status stands for it (`("finished", None, age)`), and its last iteration's
    age grows."""
    if live is None:
        return None, None, None
    if status in ENDED:
        return status, None, None if live.iteration_age is None else live.iteration_age + max(0.0, now - live.beat)
    later = max(0.0, now - live.beat) if status == "running" and live.beat else 0.0
    age = None if live.iteration_age is None else live.iteration_age + later
    return live.phase, live.phase_seconds + later, age


def share(part: float, whole: float) -> Optional[float]:
    """`part / whole` within 0..1, `None` when `whole` is not positive."""
    if not whole > 0 or not math.isfinite(whole):
        return None
    return min(1.0, max(0.0, part / whole))
