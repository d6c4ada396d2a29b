"""Bounded loss/memory history that any run length fits in, addressable by version.

A viewer keeps its own `History` and asks the producer only for points newer than the version it
has (`since`), so nothing is sent twice and nothing grows without bound.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import Any, Optional, Sequence

Point = tuple[float, float]  # (x, y): x is a global iteration (or seconds), y the value


@dataclass(frozen=True)
class HistoryDelta:
    """Points appended after a version; `reset=True` means the viewer fell behind and gets the whole series."""

    version: int
    points: list[Point]
    reset: bool = False


class History:
    """A series of `(x, y)` points held in at most `capacity` points whatever its length.

    When full, neighbouring pairs are averaged into one point (x and y alike) and later points are
    averaged `stride` at a time, so the series keeps its shape at a coarser resolution
    (multi-resolution downsampling). Non-finite `y` values are never stored: they are counted in
    `nonfinite` with their `x`, so they cannot poison an average. `version` counts every point
    ever appended; `since(v)` gives the raw points after `v` from a ring of the last `recent`.
    """

    def __init__(self, capacity: int = 2048, recent: int = 8192) -> None:
        if capacity < 2:
            raise ValueError("capacity must be >= 2")
        self.capacity = capacity
        self._points: list[Point] = []
        self._stride = 1
        self._acc: list[Point] = []  # points waiting to be averaged into one at the current stride
        self._recent: deque[Point] = deque(maxlen=recent)
        self.version = 0
        self.nonfinite: deque[Point] = deque(maxlen=1000)

    def append(self, x: float, y: float) -> None:
        self.version += 1
        self._recent.append((x, y))
        if not math.isfinite(y):
            self.nonfinite.append((x, y))
            return
        self._acc.append((x, y))
        if len(self._acc) >= self._stride:
            self._points.append(_mean(self._acc))
            self._acc = []
            self._halve_when_full()

    def _halve_when_full(self) -> None:
        """At `capacity` points, neighbouring pairs become one and later points are averaged twice as many."""
        if len(self._points) >= self.capacity:
            self._points = [_mean(self._points[i : i + 2]) for i in range(0, len(self._points), 2)]
            self._stride *= 2

    def extend_run(self, first_x: int, values: list[float]) -> None:
        """`append(first_x + 1 + i, values[i])` for each value, in bulk; every value must be finite (a fast
        loop's span: thousands of points a publication at Python's C speed, not a call each)."""
        if values:
            self._extend_finite(None, range(first_x + 1, first_x + 1 + len(values)), values)

    def extend(self, points: list[Point]) -> None:
        """`append` each of `points`, in bulk when every `y` is finite (a viewer's delta, a mirror's apply:
        the point tuples are kept as they are, not made again)."""
        if not points:
            return
        xs, ys = zip(*points)
        try:
            finite = math.isfinite(sum(ys))
        except OverflowError:  # finite values whose sum leaves the float range: one at a time
            finite = False
        if finite:
            self._extend_finite(points if isinstance(points, list) else list(points), xs, ys)
            return
        for x, y in points:
            self.append(x, y)

    def _extend_finite(self, points: Optional[list[Point]], xs: Sequence[float], ys: Sequence[float]) -> None:
        """Finite points in order, as `xs`/`ys` sequences (and as `points` tuples where the caller has them;
        `None`: made here only for what keeps them, the recent ring and unaveraged points: a span of 100,000
        makes 8,192). Whole strides are averaged from slices of `xs`/`ys`, only a partial stride goes through
        `_acc` (same sums, same order as `append`)."""
        n = len(ys)
        self.version += n

        def pairs(start: int, stop: int) -> Any:
            return points[start:stop] if points is not None else zip(xs[start:stop], ys[start:stop])

        self._recent.extend(pairs(max(0, n - (self._recent.maxlen or n)), n))
        i = 0
        while i < n:
            self._halve_when_full()  # a restored series may come full
            if self._stride == 1 and not self._acc:
                take = min(self.capacity - len(self._points), n - i)
                self._points.extend(pairs(i, i + take))
            elif not self._acc and n - i >= self._stride:
                take = self._stride
                self._points.append((sum(xs[i : i + take]) / take, sum(ys[i : i + take]) / take))
            else:
                take = min(self._stride - len(self._acc), n - i)
                self._acc.extend(pairs(i, i + take))
                if len(self._acc) >= self._stride:
                    self._points.append(_mean(self._acc))
                    self._acc = []
            i += take
        self._halve_when_full()

    def apply(self, delta: HistoryDelta) -> None:
        """Bring a viewer-side copy up to date with a delta from the producer's `since`."""
        if delta.reset:
            self.clear()
            self.extend(delta.points)
            self.version = delta.version
            return
        self.extend(delta.points)
        self.version = delta.version

    def clear(self) -> None:
        self._points, self._acc, self._stride = [], [], 1
        self._recent.clear()
        self.nonfinite.clear()
        self.version = 0

    def points(self) -> list[Point]:
        """The finite series at its current resolution, oldest first (the partial bucket included)."""
        return self._points + ([_mean(self._acc)] if self._acc else [])

    def since(self, version: int) -> HistoryDelta:
        """Points appended after `version`. Too old a version (outside the recent ring) gives the whole series."""
        missing = self.version - version
        if missing < 0 or missing > len(self._recent):
            return HistoryDelta(self.version, self.points() + list(self.nonfinite), reset=True)
        if missing > len(self._recent) // 2:
            return HistoryDelta(self.version, list(self._recent)[len(self._recent) - missing :])
        return HistoryDelta(self.version, list(islice(reversed(self._recent), missing))[::-1])  # not the whole ring

    def state_dict(self) -> dict:
        """The series for a checkpoint: `points` / `partial` (`[[x, y], ...]`), `stride`, `version`,
        `nonfinite` and `recent` (the last raw points, for the run directory's exact record). A restored
        history serves viewers whole (`since` gives them a reset) and only new points as deltas."""
        return {"points": [list(p) for p in self._points], "partial": [list(p) for p in self._acc],
                "stride": self._stride, "version": self.version, "nonfinite": [list(p) for p in self.nonfinite],
                "recent": [list(p) for p in self._recent]}

    def load_state_dict(self, state: dict) -> None:
        self.clear()
        self._points = [(float(x), float(y)) for x, y in state["points"]]
        self._acc = [(float(x), float(y)) for x, y in state["partial"]]
        self._stride, self.version = int(state["stride"]), int(state["version"])
        self.nonfinite.extend((float(x), float(y)) for x, y in state["nonfinite"])

    def last(self) -> Optional[Point]:
        return self._recent[-1] if self._recent else None

    def __len__(self) -> int:
        return len(self._points) + (1 if self._acc else 0)


def _mean(points: list[Point]) -> Point:
    n = len(points)
    xs, ys = zip(*points)
    return (sum(xs) / n, sum(ys) / n)
