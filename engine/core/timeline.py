"""The run's timeline: one row of figures per publication, so a viewer can chart any of them, and the loss
against any count (optimizer steps, samples seen, tokens, active time), not only against global iterations.

Rows are taken from the snapshot at publication (≤ 10 a second), never per iteration. Like the loss `History`
the series is bounded whatever the run's length: past `capacity` rows every other row is dropped and only every
`stride`-th new one kept (rows stay exact samples, never averages: a row's counts are the run's counts at that
moment); the newest row is always kept. Viewers get deltas by version. No torch, no textual.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any, Callable, Optional, Sequence

import msgspec


class TimelineRow(msgspec.Struct, frozen=True, array_like=True):
    """The run at one publication. Counts are the run's totals so far; `active_seconds` is elapsed time less
    paused time; `wall` Unix seconds; `learning_rates` every parameter group's; `grad_norm` the newest optimizer
    step's pre-clip total 2-norm; `samples_per_second` over training time; `data_wait` 0..1 of the loop's time
    spent waiting for batches; `device_mib` the first GPU's memory in use (NVML, whole device), `host_mib` this
    process's resident memory (MiB); `tokens` tokens seen where the job counts them. `None`: not known."""

    global_iteration: int
    global_step: int
    samples_seen: int
    active_seconds: float
    wall: float
    learning_rates: tuple[float, ...] = ()
    grad_norm: Optional[float] = None
    samples_per_second: Optional[float] = None
    data_wait: Optional[float] = None
    device_mib: Optional[float] = None
    host_mib: Optional[float] = None
    tokens: Optional[float] = None


class TimelineDelta(msgspec.Struct, frozen=True):
    """Rows appended after a version; `reset=True`: the viewer fell behind (or the run resumed) and gets the
    whole series."""

    version: int
    rows: list[TimelineRow] = []
    reset: bool = False


def timeline_row(snapshot: Any, wall: float, tokens: Optional[float] = None) -> TimelineRow:
    """The row of a `messages.Snapshot` published at Unix time `wall`; `tokens`: tokens seen, when counted."""
    devices = snapshot.devices
    gpu = devices.gpus[0].memory_used_mib if devices is not None and devices.gpus else None
    host = devices.host.process_rss_mib if devices is not None else None
    rates = tuple(snapshot.learning_rates) or ((snapshot.lr,) if snapshot.lr is not None else ())
    wait = snapshot.liveness.data_wait if snapshot.liveness is not None else None
    return TimelineRow(snapshot.global_iteration, snapshot.global_step, snapshot.samples_seen,
                       snapshot.active_seconds, wall, rates, snapshot.grad_norm, snapshot.samples_per_second,
                       wait, gpu, host, tokens)


class Timeline:
    """Rows in order of global iteration, at most `capacity` (+ the newest) held; `version` counts every row
    appended; `since(v)` gives the rows after `v` from a ring of the last `recent`, or the whole series."""

    def __init__(self, capacity: int = 2048, recent: int = 1024) -> None:
        if capacity < 4:
            raise ValueError("capacity must be >= 4")
        self.capacity = capacity
        self._rows: list[TimelineRow] = []
        self._stride, self._skipped = 1, 0  # keep one new row in `stride`; `skipped` since the last kept
        self._newest: Optional[TimelineRow] = None  # always shown, kept or not
        self._recent: deque[TimelineRow] = deque(maxlen=recent)
        self.version = 0

    def append(self, row: TimelineRow) -> bool:
        """Add `row` unless it is at the newest row's global iteration or before it (a paused run republishes:
        the counts did not move); True when added."""
        if self._newest is not None and row.global_iteration <= self._newest.global_iteration:
            return False
        self.version += 1
        self._recent.append(row)
        self._newest = row
        self._keep(row)
        return True

    def _keep(self, row: TimelineRow) -> None:
        self._skipped += 1
        if self._skipped < self._stride:
            return
        self._skipped = 0
        self._rows.append(row)
        if len(self._rows) >= self.capacity:  # multi-resolution: halve, and keep half as many from now on
            self._rows = self._rows[::2]
            self._stride *= 2

    def extend(self, rows: Sequence[TimelineRow]) -> None:
        for row in rows:
            self.append(row)

    def rows(self) -> list[TimelineRow]:
        """The series at its current resolution, oldest first, the newest row included."""
        if self._newest is not None and (not self._rows or self._rows[-1] is not self._newest):
            return self._rows + [self._newest]
        return list(self._rows)

    def last(self) -> Optional[TimelineRow]:
        return self._newest

    def since(self, version: int) -> TimelineDelta:
        """Rows appended after `version`; too old a version (outside the recent ring) gives the whole series."""
        missing = self.version - version
        if missing < 0 or missing > len(self._recent):
            return TimelineDelta(self.version, self.rows(), reset=True)
        return TimelineDelta(self.version, list(self._recent)[len(self._recent) - missing:] if missing else [])

    def apply(self, delta: TimelineDelta) -> None:
        """Bring a viewer-side copy up to date with a delta from the producer's `since`."""
        if delta.reset:
            self.clear()
        self.extend(delta.rows)
        self.version = delta.version

    def clear(self) -> None:
        self._rows, self._stride, self._skipped, self._newest = [], 1, 0, None
        self._recent.clear()
        self.version = 0

    def truncate(self, global_iteration: int) -> None:
        """Forget the rows after `global_iteration` (a resumed run runs those iterations again)."""
        kept = [r for r in self.rows() if r.global_iteration <= global_iteration]
        self.clear()
        self.extend(kept)

    # ---- a checkpoint's unit and the run directory's timeline.json ------------------------------
    def state_dict(self) -> dict:
        """`{"format": 1, "version", "stride", "rows": [[...], ...]}`, each row as `TimelineRow`'s fields in order."""
        return {"format": 1, "version": self.version, "stride": self._stride,
                "rows": msgspec.to_builtins(self.rows())}

    def frozen(self) -> Callable[[], dict]:
        """A function that makes `state_dict()` as it is now, its rows (frozen structs) listed here, converted
        when called (by a writer thread, while the loop appends on)."""
        version, stride, rows = self.version, self._stride, self.rows()
        return lambda: {"format": 1, "version": version, "stride": stride, "rows": msgspec.to_builtins(rows)}

    def load_state_dict(self, state: dict) -> None:
        self.clear()
        rows = msgspec.convert(state.get("rows", []), list[TimelineRow])
        self._stride = int(state.get("stride", 1))
        self._rows = rows
        self._newest = rows[-1] if rows else None
        self.version = int(state.get("version", len(rows)))

    def __len__(self) -> int:
        return len(self.rows())


# ---- the chart's x axes: a loss point's global iteration mapped to another count -------------------------

AXES = ("iteration", "step", "samples", "active")  # `x` cycles them; "samples" shows tokens where counted
AXIS_TITLES = {"iteration": "global iteration", "step": "optimizer step", "samples": "samples seen",
               "tokens": "tokens seen", "active": "active time (s)"}


def axis_value(row: TimelineRow, axis: str) -> Optional[float]:
    """`row`'s figure on `axis` (`iteration`, `step`, `samples`, `tokens`, `active`); `ValueError` for another."""
    if axis == "iteration":
        return float(row.global_iteration)
    if axis == "step":
        return float(row.global_step)
    if axis == "samples":
        return float(row.samples_seen)
    if axis == "tokens":
        return row.tokens
    if axis == "active":
        return row.active_seconds
    raise ValueError(f"axis must be one of {', '.join(AXIS_TITLES)}, not {axis!r}")


def to_axis(xs: Sequence[float], rows: Sequence[TimelineRow], axis: str) -> list[Optional[float]]:
    """Each global iteration of `xs` on `axis`, piecewise-linear between the two timeline rows around it: exact at
    the rows, a straight line between them (the counts grow evenly in between); from the origin (0 everywhere)
    before the first row, along the last two rows' slope after the newest. `None` where the axis has no figure
    (tokens the job does not count) or there are no rows."""
    known = [(float(r.global_iteration), v) for r in rows if (v := axis_value(r, axis)) is not None]
    if axis == "iteration":
        return [float(x) for x in xs]
    if not known:
        return [None] * len(xs)
    if known[0][0] > 0:
        known.insert(0, (0.0, 0.0))
    its = [k[0] for k in known]
    out: list[Optional[float]] = []
    for x in xs:
        if len(known) == 1:
            out.append(known[0][1])
            continue
        i = min(max(bisect.bisect_right(its, x), 1), len(known) - 1)
        (x0, y0), (x1, y1) = known[i - 1], known[i]
        out.append(y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0))
    return out


def on_axis(points: Sequence[tuple[float, float]], rows: Sequence[TimelineRow],
            axis: str) -> list[tuple[float, float]]:
    """`points` `(global iteration, y)` with x on `axis`, by `to_axis`'s interpolation; those it cannot place (no
    rows, a figure the run does not count) left out. The monitor's chart and the compare view place points so."""
    xs = to_axis([p[0] for p in points], rows, axis)
    return [(x, p[1]) for x, p in zip(xs, points) if x is not None]


def samples_axis(rows: Sequence[TimelineRow]) -> str:
    """`tokens` where the run counts them, else `samples`: what `x`'s third stop shows."""
    return "tokens" if rows and rows[-1].tokens is not None else "samples"


def finite_or_none(value: Optional[float]) -> Optional[float]:
    return value if value is not None and math.isfinite(value) else None
