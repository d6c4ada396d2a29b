"""Training loss per iteration (raw and smoothed), validation loss per epoch, change markers."""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual_plot import HiResMode, PlotWidget
from textual_plot.axis_formatter import AxisFormatter

from trainmon.engine.core.format import SCREEN, metric, tick_labels
from trainmon.engine.core.history import Point
from trainmon.engine.core.messages import Snapshot

from .loss_values import EpochBest, value_groups
from .quiet import FlowStatic


def ema(values: list[float], alpha: float = 0.1) -> list[float]:
    """Exponentially smoothed copy of `values` (bias-corrected, so the start is not pulled to 0)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = alpha * v + (1 - alpha) * avg
        out.append(avg / (1 - (1 - alpha) ** i))
    return out


def thin(points: list[Point], limit: int) -> list[Point]:
    """At most `limit` points, averaging neighbours, so a chart never draws more points than it has pixels."""
    if len(points) <= limit or limit < 1:
        return points
    step = len(points) / limit
    out = []
    for i in range(limit):
        chunk = points[int(i * step): max(int((i + 1) * step), int(i * step) + 1)]
        out.append((sum(p[0] for p in chunk) / len(chunk), sum(p[1] for p in chunk) / len(chunk)))
    return out


LEGEND = "[grey50]⠒[/]train [bold cyan]⠒[/]smoothed [bold yellow]◆[/]val [magenta]│[/]b/k [bold red]│[/]NaN"
RESUME_LEGEND = " [bold green]│[/]resumed"  # only on a chart that has a resume marker


def spread(items: list, limit: int) -> list:
    """At most `limit` items picked evenly across `items`, first and last included."""
    if len(items) <= limit:
        return list(items)
    step = (len(items) - 1) / (limit - 1)
    return [items[round(i * step)] for i in range(limit)]


def nice_ticks(low: float, high: float, fits: Callable[[list[float]], bool], whole: bool = False,
               most: int = 8) -> list[float]:
    """Ticks at multiples of 1, 2 or 5 × 10^p within [low, high]: the finest spacing whose ticks
    `fits` accepts (their labels do not touch), at most `most` of them; whole numbers only with `whole`.
    `[]` for an empty or non-finite range."""
    span = high - low
    if not (math.isfinite(low) and math.isfinite(high)) or span <= 0:
        return []
    power = math.floor(math.log10(span)) - 2
    for _ in range(8):
        for mantissa in (1, 2, 5):
            step = mantissa * 10.0 ** power
            if whole and step < 1:
                continue
            first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
            ticks = [k * step for k in range(first, last + 1)]
            if len(ticks) <= most and fits(ticks):
                return ticks
        power += 1
    return []


class ChartAxis(AxisFormatter):
    """textual-plot's tick hook for one axis: as many ticks as fit in `cells()` (the axis's length in
    cells, read at each render), labels from `numbers.tick_labels` that never touch or repeat.

    Along x a label needs its own width plus a space (at most 12 ticks); along y ticks stay 1.5 rows apart, and a label
    wider than `label_width` would be cut by the plot's margin (LossPane then shifts the data).
    """

    def __init__(self, kind: str, vertical: bool, cells: Callable[[], int], label_width: int = 9) -> None:
        self.kind, self.vertical, self.cells, self.label_width = kind, vertical, cells, label_width

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        cells = max(1, self.cells())
        span = max_ - min_

        def fits(ticks: list[float]) -> bool:
            if len(ticks) < 2:
                return True
            gap = (ticks[1] - ticks[0]) / span * cells
            if self.vertical:
                return gap >= 1.5
            return gap >= max(len(label) for label in self.get_labels_for_ticks(ticks)) + 1

        return nice_ticks(min_, max_, fits, whole=self.kind == "count", most=max_ticks if self.vertical else 12)

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return tick_labels(list(ticks), self.kind)


def offset_for(low: float, high: float, axis: ChartAxis) -> float:
    """0, or a round number to subtract from every y value when the ticks of [low, high] would need
    labels wider than the margin (a loss near -1.5e6 moving by 0.1: `-1.50000012e6`)."""
    ticks = axis.get_ticks(low, high)
    if all(len(label) <= axis.label_width for label in axis.get_labels_for_ticks(ticks)):
        return 0.0
    place = 10.0 ** (math.floor(math.log10(high - low)) + 1)
    return float(f"{round((low + high) / 2 / place) * place:.12g}")  # no 1.4999999000000001e6 from float error


def offset_text(offset: float) -> str:
    """`+ 1.5e6` for an offset of -1.5e6 (what the y axis label adds to the loss), every figure kept."""
    x = abs(offset)
    figures = next((d for d in range(1, 8) if float(f"{x:.{d - 1}e}") == x), 7)  # short: at most 7 figures
    mantissa, exponent = f"{x:.{figures - 1}e}".split("e")
    text = f"{x:.{max(0, figures - 1 - int(exponent))}f}" if 0 <= int(exponent) < 4 else f"{mantissa}e{int(exponent)}"
    return f"{'+' if offset < 0 else '−'} {text}"


def finite(value: Optional[float]) -> Optional[float]:
    """`value`, or `None` when it is NaN or Inf (never a best value, never an axis limit)."""
    return value if value is not None and math.isfinite(value) else None


class LossPane(Vertical):
    """A textual-plot chart and a line of current/best values. `draw()` is called at a few hertz at most."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.log_scale = False
        self.markers: list[tuple[float, str]] = []  # (global iteration, label) where b or k changed
        self.resume_markers: list[float] = []  # global iterations a run was resumed from (a checkpoint's)
        self.val_points: list[Point] = []  # (global iteration, val loss) per epoch
        self.best = EpochBest()  # the best epoch (validation, else train loss), fed EpochEnded by the app
        self.log_note = ""  # why the log scale leaves losses out, or cannot draw at all
        self.y_offset = 0.0  # subtracted from every y value drawn (the y label says so)
        self._snapshot: Optional[Snapshot] = None
        self._drawn_key: Optional[tuple] = None

    def compose(self) -> ComposeResult:
        plot = PlotWidget(id="loss-plot", allow_pan_and_zoom=False)
        plot.can_focus = False  # its zoom keys (+, -) must not shadow the app's batch-size keys
        yield plot
        yield FlowStatic(id="loss-values")

    def on_mount(self) -> None:
        self.border_title = "Loss"
        plot = self.query_one(PlotWidget)
        # The legend lives in our own text line: the plot's floating legend re-lays out the screen on
        # every redraw (measured: most of the app's CPU) and covers the newest points.
        plot.show_legend(is_visible=False)
        canvas = plot.query_one("#plot")  # the scale rectangle is the canvas less its 1-cell frame
        self.x_axis = ChartAxis("count", vertical=False, cells=lambda: canvas.size.width - 2)
        self.y_axis = ChartAxis("metric", vertical=True, cells=lambda: canvas.size.height - 2,
                                label_width=plot.margin_left - 1)  # textual-plot cuts longer y labels
        plot.set_x_formatter(self.x_axis)
        plot.set_y_formatter(self.y_axis)

    def show(self, s: Snapshot) -> None:
        self._snapshot = s
        flags = ""
        if s.nonfinite_count:
            flags = f"[b red]NaN/Inf losses: {s.nonfinite_count}, last at iteration {s.last_nonfinite_iteration}[/]"
        note = f"[b yellow]{self.log_note}[/]" if self.log_note else ""
        scale = " · log10 scale" if self.log_scale else ""
        lines = [value_groups(s, self.best), flags, note,
                 f"[dim]{LEGEND}{RESUME_LEGEND if self.resume_markers else ''}{scale}[/]"]
        self.query_one("#loss-values", FlowStatic).show_lines([line for line in lines if line])

    def _series(self, points: list[Point], raw: list[Point]) -> tuple[list[Point], list[Point], list[Point], str, bool]:
        """Train, smoothed and val points as drawn (log10 of the losses > 0 on the log scale), a note when
        the log scale leaves losses out or has none to draw (then the linear values are drawn), and
        whether the values are log10. `points` are thinned for drawing; the note counts `raw` ones."""
        train = [p for p in points if math.isfinite(p[1])]  # averaging huge losses can overflow
        smooth = list(zip([p[0] for p in train], ema([p[1] for p in train])))
        val = [p for p in self.val_points if math.isfinite(p[1])]
        if not self.log_scale:
            return train, smooth, val, "", False
        counted = [p for p in raw if math.isfinite(p[1])]
        below = sum(1 for p in counted if p[1] <= 0)
        if counted and below == len(counted):
            lowest = metric(min(p[1] for p in counted), SCREEN)
            note = f"log scale: no loss is > 0 (lowest {lowest}), so the chart stays linear; l switches back"
            return train, smooth, val, note, False

        def log(series: list[Point]) -> list[Point]:
            return [(x, math.log10(y)) for x, y in series if y > 0]

        note = f"log scale: {below} of {len(counted)} points ≤ 0 not drawn" if below else ""
        return log(train), log(smooth), log(val), note, True

    def _limits(self, plot: PlotWidget, series: list[list[Point]], lines: list[float], base_label: str) -> None:
        """Finite axis limits from what is drawn (textual-plot cannot scale a zero-width range, and a
        NaN would blank the chart), and an offset when the y labels would not fit (see `offset_for`)."""
        xs = [p[0] for s in series for p in s] + lines
        ys = [p[1] for s in series for p in s]
        if not xs:
            plot.set_xlimits(0, 1)
        elif max(xs) - min(xs) < 1e-9:
            plot.set_xlimits(min(xs) - 1, max(xs) + 1)
        else:
            plot.set_xlimits(min(xs), max(xs))
        self.y_offset = 0.0
        if not ys:
            plot.set_ylimits(0, 1)
            plot.set_ylabel(base_label)
            return
        low, high = min(ys), max(ys)
        if high - low <= 1e-9 * abs(low):  # a flat line: ±5% around it (±1e-3 around 0), whatever its size
            pad = abs(low) * 0.05 or 1e-3
            low, high = low - pad, high + pad
        self.y_offset = offset_for(low, high, self.y_axis)
        plot.set_ylimits(low - self.y_offset, high - self.y_offset)
        plot.set_ylabel(f"{base_label} {offset_text(self.y_offset)}" if self.y_offset else base_label)

    def draw(self, points: list[Point], nonfinite: list[Point], version: int) -> None:
        """Redraw the chart if anything changed since the last draw."""
        key = (version, self.log_scale, len(self.markers), len(self.resume_markers), len(self.val_points),
               self.size.width, self.size.height)
        if key == self._drawn_key:
            return
        self._drawn_key = key
        plot = self.query_one(PlotWidget)
        plot.clear()
        width = max(10, self.size.width - 8)
        train, smooth, val, note, logged = self._series(thin(points, 2 * width), points)
        # x spans the whole run: thinning averages x too, so the thinned series would stop short of the end
        ends = [points[0][0], points[-1][0]] if points else []
        lines = [x for x, _ in self.markers] + self.resume_markers + [x for x, _ in nonfinite]
        self._limits(plot, [train, smooth, val], ends + lines, "log10 loss" if logged else "loss")
        plot.set_xlabel("global iteration")
        off = self.y_offset
        if train:
            plot.plot([p[0] for p in train], [p[1] - off for p in train], line_style="grey50",
                      hires_mode=HiResMode.BRAILLE, label="train")
        if smooth:
            plot.plot([p[0] for p in smooth], [p[1] - off for p in smooth], line_style="bold cyan",
                      hires_mode=HiResMode.BRAILLE, label="smoothed")
        if val:
            plot.scatter([p[0] for p in val], [p[1] - off for p in val], marker="◆", marker_style="bold yellow",
                         label="val")
        for x, label in self.markers:
            plot.add_v_line(x, line_style="magenta", label=label)
        for x in self.resume_markers:
            plot.add_v_line(x, line_style="bold green", label="resumed")
        for x, _ in spread(nonfinite, 20):
            plot.add_v_line(x, line_style="bold red", label="NaN/Inf")
        if note != self.log_note:
            self.log_note = note
            if self._snapshot is not None:
                self.show(self._snapshot)
