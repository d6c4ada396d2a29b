"""Counters over a run (`Progress`) and the ETA from the training-time rate. Torch-free."""

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
    """One rate for both the speed shown and the ETA: iterations and samples per second of training time,
    averaged over the last `window_seconds` of it, leaving out warm-up.

    Feed it `update(iterations_done, samples_done, seconds)` where `seconds` is training time from the
    caller's clock (wall time less paused, validation and checkpoint time). The first `warmup_iterations`
    after the start or a `reset()` (a new batch size, a resumed run: a new speed regime) are left out. The
    rate is `settled` once it was measured over `settle_seconds` of training time and `settle_iterations`
    iterations; until then the screen says "estimating…" rather than show a guess (the first seconds of a
    run, data workers starting, are slow and unsteady). `eta(remaining_iterations)` is seconds, or `None`.
    """

    def __init__(self, warmup_iterations: int = 5, window_seconds: float = 30.0, settle_seconds: float = 3.0,
                 settle_iterations: int = 2) -> None:
        self.warmup_iterations = warmup_iterations
        self.window_seconds = window_seconds
        self.settle_seconds, self.settle_iterations = settle_seconds, settle_iterations
        self._points: deque[tuple[int, int, float]] = deque()  # (iterations, samples, training seconds)
        self._origin = 0  # iterations done at the start or the last reset
        self._measured = 0.0  # training seconds measured since the start or the last reset (not only the window)

    def state_dict(self) -> dict:
        """`{"points": [[iterations, samples, seconds], ...], "origin": iterations, "measured": seconds}`."""
        return {"points": [list(p) for p in self._points], "origin": self._origin, "measured": self._measured}

    def load_state_dict(self, state: dict) -> None:
        self._points = deque((int(i), int(s), float(t)) for i, s, t in state["points"])
        self._origin = state["origin"]
        self._measured = float(state.get("measured", 0.0))

    def reset(self, iterations_done: int) -> None:
        """Forget the measured rate; warm-up starts again from `iterations_done`."""
        self._points.clear()
        self._origin = iterations_done
        self._measured = 0.0

    def update(self, iterations_done: int, samples_done: int, seconds: float) -> None:
        if iterations_done - self._origin < self.warmup_iterations:
            return
        if self._points:
            last = self._points[-1]
            if iterations_done == last[0]:  # nothing ran since (paused, validating): the newest point stays
                return
            self._measured += max(0.0, seconds - last[2])
        self._points.append((iterations_done, samples_done, seconds))
        while len(self._points) > 2 and seconds - self._points[1][2] >= self.window_seconds:
            self._points.popleft()

    def _rate(self, index: int) -> Optional[float]:
        if len(self._points) < 2:
            return None
        first, last = self._points[0], self._points[-1]
        done, spent = last[index] - first[index], last[2] - first[2]
        return done / spent if done > 0 and spent > 0 else None

    @property
    def iterations_per_second(self) -> Optional[float]:
        return self._rate(0)

    @property
    def samples_per_second(self) -> Optional[float]:
        return self._rate(1)

    @property
    def settled(self) -> bool:
        """True once the rate was measured long enough to show (see the class docstring)."""
        if len(self._points) < 2 or self.iterations_per_second is None:
            return False
        return (self._measured >= self.settle_seconds
                and self._points[-1][0] - self._origin - self.warmup_iterations >= self.settle_iterations)

    def eta(self, remaining_iterations: Optional[int]) -> Optional[float]:
        """Seconds of training left for `remaining_iterations` at the rate shown; `None` while the rate is
        not settled or the count is unknown. A change of plan (a pending batch size) changes the count, so
        the ETA follows it at once, paused or not."""
        rate = self.iterations_per_second
        if remaining_iterations is None or rate is None or not self.settled:
            return None
        return remaining_iterations / rate
