"""What the chart can show and against what: the charts `m` cycles (the loss, then the timeline's figures, then
each validation metric per epoch), the x axes `x` cycles, and the smoothing weights `,` and `.` step through.

Pure functions over the timeline's rows (engine/core/timeline.py) and the loss points: no drawing here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from trainmon.engine.core.history import Point
from trainmon.engine.core.timeline import AXES, AXIS_TITLES, TimelineRow, axis_value, samples_axis

# the EMA's weight on the past: 0 = off (TensorBoard's "smoothing" slider, the same number)
SMOOTHING = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)
DEFAULT_SMOOTHING = 0.9


@dataclass(frozen=True)
class View:
    """One chart: its pane title, its y-axis label, its figure of a timeline row (`None`: not known), and whether
    it gets a smoothed line (noisy figures do; a schedule, a share per epoch or memory would only lag)."""

    key: str
    title: str
    label: str
    value: Optional[Callable[[TimelineRow], Optional[float]]] = None
    smoothed: bool = True


def _lr(row: TimelineRow) -> Optional[float]:
    return row.learning_rates[0] if row.learning_rates else None


def _wait(row: TimelineRow) -> Optional[float]:
    return None if row.data_wait is None else 100.0 * row.data_wait


def _memory(row: TimelineRow) -> Optional[float]:
    return row.device_mib if row.device_mib is not None else row.host_mib


TIMELINE_VIEWS = (
    View("lr", "Learning rate", "learning rate", _lr, smoothed=False),
    View("grad_norm", "Gradient norm", "pre-clip grad norm", lambda r: r.grad_norm),
    View("throughput", "Throughput", "samples/s", lambda r: r.samples_per_second),
    View("data_wait", "Data wait", "% of loop time", _wait, smoothed=False),
    View("memory", "Memory", "MiB", _memory, smoothed=False),
)
LOSS = View("loss", "Loss", "loss")


def views(val_names: Sequence[str]) -> list[View]:
    """Every chart in `m`'s order: the loss, the timeline's figures, then `val loss` and each validation metric."""
    return [LOSS, *TIMELINE_VIEWS] + [View(f"val:{name}", f"Validation {name}", f"val {name}", smoothed=False)
                                      for name in val_names]


def empty_note(view: View) -> str:
    """Why `view` has nothing to draw: the gradient norm is known only where trainmon clips gradients (the clipper
    measures it, engine/run/clipping.py); any other chart has no point yet."""
    if view.key == "grad_norm":
        return ("no gradient norm: trainmon knows it only where it clips gradients "
                "(--clip-grad-norm X, or a job's clip_grad_norm)")
    return "no data yet"


def memory_label(rows: Sequence[TimelineRow]) -> str:
    """The memory chart's y label: the GPU's memory in use where known, else this process's resident memory."""
    return "GPU MiB in use" if any(r.device_mib is not None for r in rows) else "host RSS MiB"


def timeline_series(rows: Sequence[TimelineRow], view: View, axis: str) -> list[Point]:
    """`(x, y)` for each row with a finite figure: x the row's own figure on `axis` (exact, no interpolation)."""
    out = []
    for row in rows:
        y = view.value(row) if view.value is not None else None
        x = axis_value(row, axis)
        if y is not None and x is not None and math.isfinite(y):
            out.append((x, y))
    return out


def next_axis(axis: str, rows: Sequence[TimelineRow]) -> str:
    """The axis after `axis` in `x`'s cycle (samples seen or, where counted, tokens seen in third place); only global
    iteration without a timeline (a run recorded before it)."""
    if not rows:
        return "iteration"
    cycle = [samples_axis(rows) if a == "samples" else a for a in AXES]
    current = samples_axis(rows) if axis in ("samples", "tokens") else axis
    return cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else cycle[0]


def axis_title(axis: str, scale: float = 1.0) -> str:
    """The x-axis title: `optimizer step`, `active time (min)` when the seconds are shown in minutes (`scale` 60)."""
    if axis == "active" and scale != 1.0:
        return {60.0: "active time (min)", 3600.0: "active time (h)"}[scale]
    return AXIS_TITLES[axis]


def time_scale(axis: str, span: float) -> float:
    """Seconds per unit shown on an active-time axis spanning `span` seconds: 1, 60 past 20 min, 3600 past 20 h."""
    if axis != "active":
        return 1.0
    return 3600.0 if span >= 20 * 3600 else 60.0 if span >= 20 * 60 else 1.0


def step_smoothing(weight: float, up: bool) -> float:
    """The next weight in `SMOOTHING` above (`up`) or below `weight`, held at the ends."""
    i = min(range(len(SMOOTHING)), key=lambda k: abs(SMOOTHING[k] - weight))
    return SMOOTHING[max(0, min(len(SMOOTHING) - 1, i + (1 if up else -1)))]


def smoothing_text(weight: float) -> str:
    return "smoothing off" if weight <= 0 else f"smoothing {weight:g}"
