"""The `loss_spike` rule: the loss far above its recent level, and staying there, robust to the ordinary noise of
mini-batches.

Checked in bulk on the losses of one read (a publication), never per iteration: the recent level is worked
out once per read from the last `WINDOW` finite losses, then the read's highest loss is compared with it; only
when it is above does the rule look closer: a spike is `PERSIST_OF` of `PERSIST` consecutive finite losses
above the threshold (the median of every `PERSIST` in a row, the read's and the tail of the one before). One
huge loss is noise at small batches (a batch of 2 near convergence now and then costs 30 times the median);
a loss that diverges stays up. Torch-free.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Optional, Sequence

WINDOW = 256  # finite losses that make the recent level
MIN_HISTORY = 256  # finite losses seen before the rule may fire (the first ones fall fast: no level yet)
REFRESH = 32  # finite losses between two workings-out of the recent level
PERSIST = 5  # consecutive finite losses judged together: a spike is PERSIST_OF of them above the threshold
PERSIST_OF = PERSIST // 2 + 1  # (their median above it)
_Y = itemgetter(1)


@dataclass(frozen=True)
class Spike:
    """Global iteration `global_iteration`'s loss `value` went above `threshold`; `level` is the recent median."""

    global_iteration: int
    value: float
    level: float
    threshold: float

    @property
    def message(self) -> str:
        return (f"the loss jumped to {self.value:.4g} at global iteration {self.global_iteration}, far above its "
                f"recent level {self.level:.4g} (threshold {self.threshold:.4g}): lower the learning rate, clip "
                f"gradients, or look at that batch")


class LossSpikes:
    """Finds loss spikes in the losses of each read (`check`).

    The threshold over the last `WINDOW` finite losses (median `med`, median absolute deviation `mad`,
    highest `top`, the last `PERSIST - 1` losses left out of `top`: they may be the start of a spike) is
    `max(med + factor · mad, top + 2 (top - med))`: `factor` spreads above the median, and never within three
    times the reach of the highest recent loss, so the heavy upper tail of small batches (a batch of 8 that
    holds one hard sample) is noise, not a spike. A spike is `PERSIST_OF` of `PERSIST` consecutive losses
    above it (see the module docstring). `factor` > 0 (`AlertSettings.loss_spike_factor`); raises
    `ValueError` otherwise."""

    def __init__(self, factor: float = 10.0) -> None:
        if not factor > 0:
            raise ValueError(f"loss_spike_factor must be a number > 0, not {factor}")
        self.factor = factor
        self.recent: deque[float] = deque(maxlen=WINDOW)
        self.tail: deque[tuple[float, float]] = deque(maxlen=PERSIST - 1)  # the last finite points read
        self.seen = 0  # finite losses seen
        self._level: Optional[tuple[float, float]] = None  # (median, spread) of the recent losses
        self._level_at = -WINDOW  # `seen` when `_level` was worked out

    def threshold(self) -> Optional[tuple[float, float]]:
        """`(median, threshold)` of the recent losses; `None` before `MIN_HISTORY` finite losses. The median
        and spread are worked out again once `REFRESH` losses came since (a sort of the window: reads of
        tiny epochs stay cheap); the highest recent loss is always the current one (a stale, lower one would
        lower the threshold)."""
        if self.seen < MIN_HISTORY or not self.recent:
            return None
        if self._level is None or self.seen - self._level_at >= REFRESH:
            self._level, self._level_at = self._spread(), self.seen
        med, mad = self._level
        recent = self.recent
        top = max(recent) if len(recent) < PERSIST else max(islice(recent, len(recent) - PERSIST + 1))  # C speed
        return med, max(med + self.factor * mad, 3 * top - 2 * med)

    def _spread(self) -> tuple[float, float]:
        """`(median, median absolute deviation)` of the recent losses (`mad_of_sorted`)."""
        return mad_of_sorted(sorted(self.recent))

    def check(self, points: Sequence[tuple[float, float]]) -> Optional[Spike]:
        """The first spike among `points` (`(global_iteration, loss)` of one read, oldest first; NaN and Inf
        are left to the `nan` rule), or `None`; the read's finite losses then join the recent ones."""
        if not points:
            return None
        ys = list(map(_Y, points))
        try:
            finite = math.isfinite(sum(ys))
        except OverflowError:
            finite = False
        if not finite:  # a NaN or an Inf in the read (rare): keep the finite ones, one by one
            points = [p for p in points if math.isfinite(p[1])]
            ys = list(map(_Y, points))
            if not ys:
                return None
        spike = None
        level = self.threshold()
        if level is not None and max(ys) > level[1]:
            spike = self._persisting([*self.tail, *points], level)
            if spike is not None:
                self._level = None  # the spike joins the recent losses: the level is worked out again next read
        self.recent.extend(ys[-WINDOW:])
        self.tail.extend(points[-PERSIST:])
        self.seen += len(ys)
        return spike

    @staticmethod
    def _persisting(points: Sequence[tuple[float, float]], level: tuple[float, float]) -> Optional[Spike]:
        """The first `PERSIST` points in a row with `PERSIST_OF` above the threshold, as a `Spike` at the first
        of them above it; `None` when the loss went above only now and then."""
        threshold = level[1]
        above = [p[1] > threshold for p in points]
        for end in range(PERSIST, len(points) + 1):
            if sum(above[end - PERSIST:end]) >= PERSIST_OF:
                x, value = next(p for p in points[end - PERSIST:end] if p[1] > threshold)
                return Spike(int(x), value, *level)
        return None


def mad_of_sorted(s: Sequence[float]) -> tuple[float, float]:
    """`(med, mad)` of the sorted, non-empty `s`: `med = s[n // 2]` and `mad` the `n // 2`-th (0-based) of the
    sorted `|v - med|`, exactly that value, without sorting the deviations: those of `s[n // 2:]` (`v - med`)
    and of `s[:n // 2]` read backwards (`med - v`) are two ascending runs, and the `n // 2`-th of their union is
    found by bisecting the count taken from the first (O(log n) steps, against a sort of `n` deviations)."""
    n = len(s)
    m = n // 2  # the median's index, and the rank of the deviation sought: the m + 1 smallest end with it
    med = s[m]
    # m + 1 deviations taken: i from the run above (n - m of them, med's own 0 first), m + 1 - i from below (m
    # of them: so one at least from above)
    lo, hi = 1, min(m + 1, n - m)
    while lo < hi:  # the fewest from above such that the next one above is no smaller than the last one below
        i = (lo + hi) // 2  # i <= m here: m + 1 - i >= 1 from below, the last of them s[i - 1]'s
        if s[m + i] - med < med - s[i - 1]:
            lo = i + 1
        else:
            hi = i
    above = s[m + lo - 1] - med  # the largest of those taken from above
    return med, above if lo == m + 1 else max(above, med - s[lo - 1])  # and from below, where any were taken
