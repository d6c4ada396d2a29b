"""The loss history a run directory keeps: recent iterations exactly, older ones as exact aggregates.

Bounded whatever the run's length (a day at 1,000 iterations/s is 86 million points): the newest
`recent` points are kept raw; older ones fall into buckets of consecutive iterations holding their
count, mean, min and max, and when there are `capacity` buckets, neighbours merge (aggregates merge
exactly: counts add, sums add, min of mins, max of maxes). Non-finite losses are never aggregated;
the last `nonfinite_keep` are kept apart with their iteration. No torch import.
"""

from __future__ import annotations

import math
from collections import deque
from itertools import islice
from typing import Any, Callable

from trainmon.engine.core.history import History


class LossArchive:
    """Append `(global_iteration, loss)`; `to_dict()` / `from_dict()` for the run directory's loss.json.

    Buckets are `[first_x, last_x, count, mean, min, max]`; `recent` points `[x, y]`, oldest first.
    """

    def __init__(self, recent: int = 10_000, capacity: int = 4096, nonfinite_keep: int = 1000) -> None:
        self.capacity = capacity
        self.recent: deque[tuple[float, float]] = deque(maxlen=recent)
        self.buckets: list[list[float]] = []  # [first_x, last_x, count, sum, min, max] while held here
        self.width = 1  # points per bucket (doubles when buckets merge)
        self.nonfinite: deque[tuple[float, float]] = deque(maxlen=nonfinite_keep)
        self.count = 0  # finite points ever appended

    def append(self, x: float, y: float) -> None:
        if not math.isfinite(y):
            self.nonfinite.append((x, y))
            return
        self.count += 1
        if len(self.recent) == self.recent.maxlen:
            self._age(*self.recent[0])
        self.recent.append((x, y))

    def extend(self, points: list[tuple[float, float]]) -> None:
        """`append` each point, in bulk where all are finite (a fast loop's publication brings thousands:
        the points leaving `recent` age into buckets a bucket at a time, not a point at a time)."""
        if len(points) < 64 or not math.isfinite(sum(next(islice(zip(*points), 1, None)))):
            for x, y in points:
                self.append(x, y)
            return
        self.count += len(points)
        overflow = len(self.recent) + len(points) - (self.recent.maxlen or 0)
        if overflow > 0:
            held = min(overflow, len(self.recent))
            self._age_many([self.recent[i] for i in range(held)] + points[: overflow - held])
        self.recent.extend(points)  # the deque's maxlen drops what just aged

    def _age_many(self, old: list[tuple[float, float]]) -> None:
        """`_age` for each of `old`, oldest first, whole buckets at once where nothing else can happen (a
        partial last bucket, or a bucket that would make them merge, goes a point at a time, as `_age`)."""
        i = 0
        while i < len(old):
            last = self.buckets[-1] if self.buckets else None
            if (last is not None and last[2] < self.width) or len(self.buckets) + 1 >= self.capacity:
                self._age(*old[i])
                i += 1
                continue
            chunk = old[i : i + self.width]
            ys = [y for _, y in chunk]
            self.buckets.append([chunk[0][0], chunk[-1][0], len(chunk), sum(ys), min(ys), max(ys)])
            i += len(chunk)

    def _age(self, x: float, y: float) -> None:
        """Move the oldest recent point into the buckets."""
        last = self.buckets[-1] if self.buckets else None
        if last is not None and last[2] < self.width:
            last[1], last[2], last[3] = x, last[2] + 1, last[3] + y
            last[4], last[5] = min(last[4], y), max(last[5], y)
        else:
            self.buckets.append([x, x, 1, y, y, y])
        if len(self.buckets) >= self.capacity:
            self.buckets = [_merge(self.buckets[i : i + 2]) for i in range(0, len(self.buckets), 2)]
            self.width *= 2

    def truncate(self, last_x: float) -> None:
        """Forget every point after iteration `last_x` (a resumed run runs them again). Buckets that
        reach past it go whole: the history has a gap there rather than a mixed aggregate."""
        kept = [p for p in self.recent if p[0] <= last_x]
        dropped = len(self.recent) - len(kept) + sum(int(b[2]) for b in self.buckets if b[1] > last_x)
        self.recent.clear()
        self.recent.extend(kept)
        self.buckets = [b for b in self.buckets if b[1] <= last_x]
        kept_nonfinite = [p for p in self.nonfinite if p[0] <= last_x]
        self.nonfinite.clear()
        self.nonfinite.extend(kept_nonfinite)
        self.count -= dropped

    def last_x(self) -> float:
        """The newest finite point's iteration (0 when empty)."""
        if self.recent:
            return self.recent[-1][0]
        return self.buckets[-1][1] if self.buckets else 0.0

    def to_dict(self) -> dict[str, Any]:
        return self.frozen()()

    def frozen(self) -> Callable[[], dict[str, Any]]:
        """A function that makes `to_dict()` of the archive as it is now, from copies taken here (the buckets
        as tuples, the recent points' list): a writer thread calls it while the loop appends on."""
        count, width = self.count, self.width
        buckets, recent, nonfinite = [tuple(b) for b in self.buckets], list(self.recent), list(self.nonfinite)

        def make() -> dict[str, Any]:
            return {
                "format": 1,
                "count": count,
                "bucket_width": width,
                "buckets": [[b[0], b[1], int(b[2]), b[3] / b[2], b[4], b[5]] for b in buckets],
                "recent": [list(p) for p in recent],
                "nonfinite": [[x, _json_float(y)] for x, y in nonfinite],
            }

        return make

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LossArchive":
        archive = cls()
        archive.count = int(data.get("count", 0))
        archive.width = int(data.get("bucket_width", 1))
        archive.buckets = [[b[0], b[1], b[2], b[3] * b[2], b[4], b[5]] for b in data.get("buckets", [])]
        archive.recent.extend((float(x), float(y)) for x, y in data.get("recent", []))
        archive.nonfinite.extend((float(x), float(y)) for x, y in data.get("nonfinite", []))
        return archive

    def to_history(self, capacity: int = 2048) -> History:
        """A viewer's `History` of the whole run: each bucket as one point at its mean, then the recent
        points, then the non-finite markers."""
        history = History(capacity=capacity)
        for first, last, count, total, _lo, _hi in self.buckets:
            history.append((first + last) / 2, total / count)
        for x, y in self.recent:
            history.append(x, y)
        for x, y in self.nonfinite:
            history.append(x, y)
        return history


def _merge(pair: list[list[float]]) -> list[float]:
    if len(pair) == 1:
        return pair[0]
    a, b = pair
    return [a[0], b[1], a[2] + b[2], a[3] + b[3], min(a[4], b[4]), max(a[5], b[5])]


def _json_float(y: float) -> Any:
    """NaN and Inf are not JSON: spell them as strings Python's float() reads back."""
    return y if math.isfinite(y) else str(y)
