"""Planned run totals: what finished epochs really ran plus what the rest will run under current settings.

Torch-free. The counting itself is `arithmetic`'s (`steps_left`, `scheduled_counts`); this unit
keeps what is done and caches the later epochs' plan until a setting changes.
"""

from __future__ import annotations

from typing import Optional

from trainmon.engine.core.arithmetic import BatchSizeSchedule, steps_left
from trainmon.engine.core.plan import scheduled_counts
from trainmon.engine.core.progress import Progress

Totals = tuple[Optional[int], Optional[int], Optional[int], Optional[int]]


class PlannedTotals:
    """Counts of finished epochs, the current epoch's plan, and the planned run totals.

    State (`state_dict`): `iterations_done` / `steps_done` (of finished epochs), `epochs_completed`,
    `samples_at_epoch_start`, `iterations_in_epoch` (the current epoch's plan, or what it ran once an
    epoch of unknown length ended; `None` before), `epoch_samples` (its planned samples) and
    `epoch_done`. The cache of later epochs is derived and left out.
    """

    def __init__(self, samples: Optional[int], epochs: int, drop_last: bool = False) -> None:
        self.samples, self.epochs, self.drop_last = samples, epochs, drop_last
        self.iterations_done = self.steps_done = self.epochs_completed = 0
        self.samples_at_epoch_start = 0
        self.iterations_in_epoch: Optional[int] = None
        self.epoch_samples: Optional[int] = None
        self.epoch_done = False
        self._later: tuple = (None, (0, 0, 0))  # (key, counts) of the epochs after the current one

    def begin_epoch(self, iterations: Optional[int], epoch_samples: Optional[int], samples_seen: int) -> None:
        self.iterations_in_epoch, self.epoch_samples = iterations, epoch_samples
        self.samples_at_epoch_start = samples_seen
        self.epoch_done = False

    def end_epoch(self, iterations: int, steps: int) -> None:
        """The epoch's loader ended after `iterations` iterations and `steps` optimizer steps."""
        self.epoch_done = True
        self.iterations_done += iterations
        self.steps_done += steps
        if self.iterations_in_epoch is None:
            self.iterations_in_epoch = iterations

    def totals(self, progress: Progress, window_size: int, accum: int, schedule: BatchSizeSchedule,
               index: int) -> Totals:
        """Planned `(total iterations, total steps, total samples, steps this epoch)`; all `None` for an
        unknown length.

        Done epochs count what really ran; the current epoch its plan with the open window of
        `window_size` micro-batches; later epochs run at `schedule.at(index)`, `schedule.at(index + 1)`,
        ... with `accum` (the next window's) accumulation steps.
        """
        p = progress
        if self.samples is None:
            return None, None, None, None
        total_it, total_steps, total_samples = self.iterations_done, self.steps_done, self.samples_at_epoch_start
        steps_this_epoch = None
        if p.epoch and self.iterations_in_epoch is not None and not self.epoch_done:
            open_left = window_size - p.window_position if p.window_position > 0 else None
            steps_this_epoch = p.steps_in_epoch + steps_left(self.iterations_in_epoch - p.iteration_in_epoch,
                                                             accum, open_left)
            total_it += self.iterations_in_epoch
            total_steps += steps_this_epoch
            total_samples += self.epoch_samples or 0
        elif p.epoch:
            steps_this_epoch = p.steps_in_epoch
            total_samples = p.samples_seen
        later_it, later_steps, later_samples = self._later_epochs(p.epoch, accum, schedule, index)
        return total_it + later_it, total_steps + later_steps, total_samples + later_samples, steps_this_epoch

    def _later_epochs(self, start: int, accum: int, schedule: BatchSizeSchedule, index: int) -> tuple[int, int, int]:
        """(iterations, steps, samples) of epoch indexes `start`.. to the end; cached until an input changes."""
        key = (start, accum, schedule, index)
        if self._later[0] != key:
            counts = scheduled_counts(self.samples, schedule, index, self.epochs - start, accum,
                                      self.drop_last)
            self._later = (key, counts)
        return self._later[1]

    def state_dict(self) -> dict:
        return {"iterations_done": self.iterations_done, "steps_done": self.steps_done,
                "epochs_completed": self.epochs_completed, "samples_at_epoch_start": self.samples_at_epoch_start,
                "iterations_in_epoch": self.iterations_in_epoch, "epoch_samples": self.epoch_samples,
                "epoch_done": self.epoch_done}

    def load_state_dict(self, state: dict) -> None:
        for key in self.state_dict():
            setattr(self, key, state[key])
        self._later = (None, (0, 0, 0))


def steps_cut(steps: Optional[int], iterations: Optional[int], samples: Optional[int], max_steps: Optional[int],
              per_epoch: tuple[Optional[int], Optional[int], Optional[int], int, int]) -> tuple:
    """Planned run totals `(steps, iterations, samples)` under a `max_steps` cut-off.

    `per_epoch` is `(iterations n, steps s, samples m, accum k, batch size b)` of one epoch. When the cut
    comes first, the run ends after `f = max_steps // s` whole epochs and `r = max_steps % s` more full
    windows (`r < s`, so none of them is an epoch's short last window): `f·n + r·k` iterations and
    `f·m + r·k·b` samples. Unchanged without a cut or with unknown counts.
    """
    if max_steps is None or steps is None or steps <= max_steps:
        return steps, iterations, samples
    n, s, m, k, b = per_epoch
    if not n or not s or m is None:
        return max_steps, None, None
    whole, rest = divmod(max_steps, s)
    return max_steps, whole * n + rest * k, whole * m + rest * k * b
