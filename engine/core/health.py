"""Where a run's time goes, judged: the `input_bound` and `throughput_drop` rules, pure and torch-free.

Both judge windows of loop time (the time inside the loop's batches: validation, pauses and checkpoint
saves are not in it), closed every `WINDOW` seconds of loop time and at each epoch's end.

- `input_bound`: the window spent at least `AlertSettings.input_bound_fraction` of its loop time waiting
  for the next batch (a window of at least `MIN_JUDGED` seconds).
- `throughput_drop`: a minute's samples/s is below `AlertSettings.throughput_drop_fraction` of the run's
  typical rate, the median of its earlier whole minutes at this batch size; the first minute (warm-up)
  and the first minute after a batch-size change are left out, and at least `MIN_MINUTES` must be known.
"""

from __future__ import annotations

from collections import deque
from statistics import median
from typing import Optional

WINDOW = 60.0  # seconds of loop time in a window
MIN_JUDGED = 1.0  # seconds: an epoch shorter than this is not judged alone
MIN_MINUTES = 3  # earlier minutes needed before a drop is judged


def input_bound_message(data_wait: float) -> str:
    """The `input_bound` alert's words for a share `data_wait` (0..1) of the loop time waiting for batches."""
    return (f"input-bound: {round(100 * data_wait)} % of the time waiting for the next batch — more DataLoader "
            f"workers, pin_memory, or a faster dataset")


def is_input_bound(wait: float, loop: float, fraction: float) -> Optional[bool]:
    """True when `wait` seconds of `loop` seconds reach `fraction`; `None`: too short to judge."""
    if loop < MIN_JUDGED:
        return None
    return wait / loop >= fraction


class ThroughputWatch:
    """Minutes of samples/s at one batch size: `minute(samples, seconds)` closes one and returns the typical
    rate it fell below (`fraction` of the median of the earlier minutes), else `None`; `reset()` at a
    batch-size change (its next minute is warm-up again)."""

    KEEP = 30

    def __init__(self) -> None:
        self._rates: deque[float] = deque(maxlen=self.KEEP)
        self._warm = False

    def reset(self) -> None:
        self._rates.clear()
        self._warm = False

    def minute(self, samples: int, seconds: float, fraction: float) -> Optional[float]:
        if seconds <= 0:
            return None
        rate = samples / seconds
        if not self._warm:  # the first minute: workers starting, caches cold
            self._warm = True
            return None
        typical = median(self._rates) if len(self._rates) >= MIN_MINUTES else None
        if typical is not None and rate < fraction * typical:
            return typical  # a dropped minute is not kept: the typical rate stays the healthy one
        self._rates.append(rate)
        return None


def throughput_message(rate: float, typical: float) -> str:
    return (f"throughput dropped: {rate:.4g} samples/s over the last minute, against a typical {typical:.4g} "
            f"samples/s ({round(100 * rate / typical)} %)")
