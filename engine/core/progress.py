"""Counters over a run (`Progress`) and the ETA from the active sample rate. Torch-free."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Optional

# --------------------------------------------------------------------------------------------
# Counters over a run
# --------------------------------------------------------------------------------------------


@dataclass
class Progress:
    """Global counters over a whole run, advanced from real batch sizes (never `iterations · b`).

    Plain dataclass with `state_dict()` / `load_state_dict()` so tests compare it whole and a
    checkpoint can carry it. Correct when `b` or `k` change between epochs or windows.
    """

    epoch: int = 0  # 1-based index of the current (or last) epoch; 0 before the first starts
    iteration_in_epoch: int = 0  # iterations completed in the current epoch
    window_position: int = 0  # micro-batches accumulated in the current, not yet stepped window
    window_samples: int = 0  # samples accumulated in that window
    steps_in_epoch: int = 0
    global_iteration: int = 0  # iterations completed over the run
    global_step: int = 0  # optimizer steps over the run
    samples_seen: int = 0
    steps_skipped: int = 0  # optimizer steps a grad scaler skipped (inf/NaN gradients); counted in global_step too

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.iteration_in_epoch = 0
        self.steps_in_epoch = 0
        self.window_position = 0
        self.window_samples = 0

    def record_iteration(self, batch_samples: int) -> None:
        """One forward+backward on a batch of `batch_samples` samples completed."""
        self.iteration_in_epoch += 1
        self.global_iteration += 1
        self.window_position += 1
        self.window_samples += batch_samples
        self.samples_seen += batch_samples

    def record_step(self) -> None:
        """One optimizer step closed the current window."""
        self.steps_in_epoch += 1
        self.global_step += 1
        self.window_position = 0
        self.window_samples = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


# --------------------------------------------------------------------------------------------
# ETA
# --------------------------------------------------------------------------------------------


def remaining_samples(
    samples: Optional[int], epochs: int, epoch: int, samples_in_epoch_done: int, epoch_samples_now: Optional[int]
) -> Optional[int]:
    """Samples left in the run: the rest of the current epoch plus `m` per later epoch.

    `epoch` is 1-based; `epoch_samples_now` is the current epoch's total (less than `m` with
    drop_last). `None` when the length is unknown.
    """
    if samples is None or epoch_samples_now is None:
        return None
    later = max(0, epochs - max(epoch, 1)) * samples
    return max(0, epoch_samples_now - samples_in_epoch_done) + later


class EtaEstimator:
    """Seconds left from the recent active sample rate, leaving out warm-up and paused time.

    Feed it `update(iterations_done, samples_done, active_seconds)` (active = wall time minus
    paused time, from the caller's clock). The first `warmup_iterations` after the start or a
    `reset()` (a new batch size is a new speed regime) are left out; the rate is measured over the
    last `window_seconds` of active time, so it follows a change of speed. `eta(remaining)` returns
    seconds, or `None` while there is no rate yet or the remaining count is unknown.
    """

    def __init__(self, warmup_iterations: int = 5, window_seconds: float = 30.0) -> None:
        self.warmup_iterations = warmup_iterations
        self.window_seconds = window_seconds
        self._points: deque[tuple[int, float]] = deque()  # (samples, active seconds)
        self._origin = 0  # iterations done at the start or the last reset

    def state_dict(self) -> dict:
        """`{"points": [[samples, active seconds], ...], "origin": iterations}`: the measured rate's inputs."""
        return {"points": [list(p) for p in self._points], "origin": self._origin}

    def load_state_dict(self, state: dict) -> None:
        self._points = deque((int(s), float(t)) for s, t in state["points"])
        self._origin = state["origin"]

    def reset(self, iterations_done: int) -> None:
        """Forget the measured rate; warm-up starts again from `iterations_done`."""
        self._points.clear()
        self._origin = iterations_done

    def update(self, iterations_done: int, samples_done: int, active_seconds: float) -> None:
        if iterations_done - self._origin < self.warmup_iterations:
            return
        self._points.append((samples_done, active_seconds))
        while len(self._points) > 2 and active_seconds - self._points[1][1] >= self.window_seconds:
            self._points.popleft()

    @property
    def samples_per_second(self) -> Optional[float]:
        if len(self._points) < 2:
            return None
        (s0, t0), (s1, t1) = self._points[0], self._points[-1]
        if s1 <= s0 or t1 <= t0:
            return None
        return (s1 - s0) / (t1 - t0)

    def eta(self, remaining: Optional[int]) -> Optional[float]:
        rate = self.samples_per_second
        if remaining is None or rate is None:
            return None
        return remaining / rate
