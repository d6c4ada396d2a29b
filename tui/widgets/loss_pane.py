"""The run's chart: training loss per iteration (raw and smoothed), validation loss per epoch, change, epoch
and resume markers; or, cycled with `m`, a timeline figure (learning rate, gradient norm, throughput, data
wait, memory) or a validation metric per epoch; against the x axis `x` cycles (chart/views.py)."""

from __future__ import annotations

import math
from typing import Optional

from textual.app import ComposeResult
from textual.containers import Vertical
from textual_plot import PlotWidget

from trainmon.engine.core.format import SCREEN, metric
from trainmon.engine.core.history import Point
from trainmon.engine.core.messages import EpochEnded, Snapshot
from trainmon.engine.core.timeline import TimelineRow, on_axis, to_axis
from trainmon.tui.compat import composed_plot

from .chart import (
    MARKS,
    ChartAxis,
    Grid,
    draw_columns,
    draw_labels,
    draw_note,
    draw_points,
    ema,
    legend,
    offset_for,
    offset_text,
    spread,
    thin,
    y_title,
)
from .chart.views import (
    DEFAULT_SMOOTHING,
    LOSS,
    View,
    axis_title,
    empty_note,
    memory_label,
    next_axis,
    smoothing_text,
    step_smoothing,
    time_scale,
    timeline_series,
    views,
)
from .loss_values import EpochBest, value_groups
from .quiet import FlowStatic

LEGEND = ("train", "smoothed", "val", "change", "nan")  # and "resumed", "alert" on a chart with such marks


class LossPane(Vertical):
    """A textual-plot chart and a line of current/best values. `draw()` is called at a few hertz at most."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.log_scale = False
        self.markers: list[tuple[float, str]] = []  # (global iteration, label) where b or k changed
        self.resume_markers: list[float] = []  # global iterations a run was resumed from (a checkpoint's)
        self.alert_markers: list[tuple[float, str]] = []  # (global iteration, kind) of each alert
        self.val_points: list[Point] = []  # (global iteration, val loss) per epoch
        self.best = EpochBest()  # the best epoch (validation, else train loss), fed EpochEnded by the app
        self.log_note = ""  # why the log scale leaves losses out, or cannot draw at all
        self.y_offset = 0.0  # subtracted from every y value drawn (the y label says so)
        self.epoch_marks: list[float] = []  # global iterations at which epochs ended
        self.val_epochs: list[tuple[float, dict[str, float]]] = []  # (global iteration, {"loss": .., metric: ..})
        self.axis = "iteration"  # `x`: iteration, step, samples (tokens), active (engine/core/timeline.py AXES)
        self.smoothing = DEFAULT_SMOOTHING  # the EMA's weight on the past; 0: off
        self.view_key = "loss"  # `m`: which chart (chart/views.py)
        self.rows: list[TimelineRow] = []  # the timeline as last drawn
        self._snapshot: Optional[Snapshot] = None
        self._drawn_key: Optional[tuple] = None

    def compose(self) -> ComposeResult:
        plot = PlotWidget(id="loss-plot", allow_pan_and_zoom=False)
        plot.can_focus = False  # its zoom keys (+, -) must not shadow the app's batch-size keys
        yield plot
        yield FlowStatic(id="loss-values")

    # ---- what is charted, against what ----------------------------------------------------------
    def take_epoch(self, event: EpochEnded) -> None:
        """An epoch's end: its mark, its validation loss and metrics."""
        self.best.take(event)
        self.epoch_marks.append(event.global_iteration)
        figures = {"loss": event.val_loss} if event.val_loss is not None else {}
        figures.update({k: v for k, v in event.val_metrics.items() if isinstance(v, (int, float))})
        if figures:
            self.val_epochs.append((event.global_iteration, figures))
        if event.val_loss is not None:
            self.val_points.append((event.global_iteration, event.val_loss))

    def views(self) -> list[View]:
        return views(list(dict.fromkeys(name for _, figures in self.val_epochs for name in figures)))

    def view(self) -> View:
        return next((v for v in self.views() if v.key == self.view_key), LOSS)

    def next_view(self) -> str:
        """`m`: the next chart; its title names it."""
        keys = [v.key for v in self.views()]
        self.view_key = keys[(keys.index(self.view_key) + 1) % len(keys)] if self.view_key in keys else "loss"
        self._retitle()
        return self.view_key

    def next_axis(self) -> str:
        """`x`: the next x axis (only global iteration for a run recorded without a timeline)."""
        self.axis = next_axis(self.axis, self.rows)
        return self.axis

    def smooth(self, up: bool) -> float:
        """`.` / `,`: a heavier / lighter smoothing, shown in the title."""
        self.smoothing = step_smoothing(self.smoothing, up)
        self._retitle()
        return self.smoothing

    def _retitle(self) -> None:
        view = self.view()
        groups = len(self.rows[-1].learning_rates) if self.rows else 0
        extra = f" (group 1 of {groups})" if view.key == "lr" and groups > 1 else ""
        smoothing = f" · {smoothing_text(self.smoothing)}" if view.smoothed else ""
        self.border_title = f"{view.title}{extra}{smoothing}"
        if self._snapshot is not None:
            self.show(self._snapshot)

    def on_mount(self) -> None:
        self._retitle()
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
        marks = (("epoch",) if self.epoch_marks else ()) + (("resumed",) if self.resume_markers else ()) + (
            ("alert",) if self.alert_markers else ())
        view = self.view()
        if view.key == "loss":
            kinds = LEGEND[:2] if self.smoothing else LEGEND[:1]
            kinds += LEGEND[2:] + marks
        else:
            kinds = ("figure",) + (("smoothed",) if self.smoothing and view.smoothed else ()) + (
                ("val",) if not view.value else ()) + marks
        lines = [value_groups(s, self.best), flags, note, legend(kinds, {"figure": self._label(view)}) + f"[dim]{scale}[/]"]
        self.query_one("#loss-values", FlowStatic).show_lines([line for line in lines if line])

    def _label(self, view: View) -> str:
        return memory_label(self.rows) if view.key == "memory" else view.label

    def _series(self, main: list[Point], smooth: list[Point], val: list[Point], raw: list[Point],
                label: str) -> tuple[list[Point], list[Point], list[Point], str, bool]:
        """The main, smoothed and val points as drawn (log10 of the values > 0 on the log scale), a note when
        the log scale leaves values out or has none to draw (then the linear values are drawn), and whether the
        values are log10. `main` and `smooth` are thinned for drawing; the note counts `raw` ones."""
        main, smooth = [p for p in main if math.isfinite(p[1])], [p for p in smooth if math.isfinite(p[1])]
        val = [p for p in val if math.isfinite(p[1])]  # averaging huge losses can overflow
        if not self.log_scale:
            return main, smooth, val, "", False
        counted = [p for p in raw if math.isfinite(p[1])]
        below = sum(1 for p in counted if p[1] <= 0)
        if counted and below == len(counted):
            lowest = metric(min(p[1] for p in counted), SCREEN)
            note = f"log scale: no {label} is > 0 (lowest {lowest}), so the chart stays linear; l switches back"
            return main, smooth, val, note, False

        def log(series: list[Point]) -> list[Point]:
            return [(x, math.log10(y)) for x, y in series if y > 0]

        note = f"log scale: {below} of {len(counted)} points ≤ 0 not drawn" if below else ""
        return log(main), log(smooth), log(val), note, True

    def _limits(self, plot: PlotWidget, series: list[list[Point]], lines: list[float], base_label: str,
                pad: bool = False) -> Grid:
        """Finite axis limits from what is drawn (textual-plot cannot scale a zero-width range, and a
        NaN would blank the chart), and an offset when the y labels would not fit (see `offset_for`).
        `pad`: half a row above and below and a column on the right, so that a line along its lowest or highest
        value (memory, a constant learning rate) is not drawn on the frame. The grid of cells those limits give."""
        canvas = plot.query_one("#plot")  # the scale rectangle is the canvas less its 1-cell frame
        cols, rows = max(1, canvas.size.width - 2), max(1, canvas.size.height - 2)
        xs = [p[0] for s in series for p in s] + lines
        ys = [p[1] for s in series for p in s]
        x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
        if x_hi - x_lo < 1e-9:
            x_lo, x_hi = x_lo - 1, x_hi + 1
        if pad:
            x_hi += (x_hi - x_lo) / cols
        plot.set_xlimits(x_lo, x_hi)
        self.y_offset = 0.0
        if not ys:
            plot.set_ylimits(0, 1)
            plot.set_ylabel(_wide(plot, base_label))
            return Grid(x_lo, x_hi, 0.0, 1.0, cols, rows)
        low, high = min(ys), max(ys)
        if high - low <= 1e-9 * abs(low):  # a flat line: a span of 10 % of it (2e-3 around 0), whatever its size,
            span = 2 * (abs(low) * 0.05 or 1e-3)  # placed so that the line runs through the middle of a braille
            below = span * (rows // 2 + 0.375) / rows  # dot row (a cell holds 4), not along the edge of two: drawn
            # there, a last-digit wobble of the value (a mean of equal rates) took both, as a jagged line
            low, high = low - below, low - below + span
        elif pad:
            low, high = low - (high - low) / (2 * rows), high + (high - low) / (2 * rows)
        self.y_offset = offset_for(low, high, self.y_axis)
        plot.set_ylimits(low - self.y_offset, high - self.y_offset)
        plot.set_ylabel(_wide(plot, f"{base_label} {offset_text(self.y_offset)}" if self.y_offset else base_label))
        return Grid(x_lo, x_hi, low - self.y_offset, high - self.y_offset, cols, rows)

    def _place(self, xs: list[float], axis: str, scale: float) -> list[Optional[float]]:
        """Global iterations on the chart's x axis (interpolated between timeline rows; seconds ÷ `scale`)."""
        return [None if x is None else x / scale for x in to_axis(xs, self.rows, axis)]

    def _marks(self, axis: str, scale: float) -> list[tuple[float, str, str]]:
        """The vertical marks, `(x, kind, label)` on the chart's axis: epoch ends first (drawn under the rest)."""
        most = self._most_columns()  # an epoch mark every few columns at most (200 epochs: a wall)
        marks = ([(x, "epoch", "") for x in spread(self.epoch_marks, most)]
                 + [(x, "change", label) for x, label in self.markers]
                 + [(x, "resumed", "") for x in self.resume_markers] + [(x, "alert", kind) for x, kind in
                                                                         spread(self.alert_markers, 20)])
        xs = self._place([m[0] for m in marks], axis, scale)
        return [(x, kind, label) for x, (_, kind, label) in zip(xs, marks) if x is not None]

    def draw(self, points: list[Point], nonfinite: list[Point], version: int, rows: Optional[list[TimelineRow]] = None,
             rows_version: int = 0) -> None:
        """Redraw the chart if anything changed since the last draw. Drawn in this order, each over the
        ones before: the epoch marks, the line (train loss, or the chosen figure), the smoothed line, the b/k, resume, NaN
        and alert columns, validation points (at most one per 3 columns, so that many epochs leave the line in
        sight), the columns' labels. `rows`: the run's timeline (the other charts, the other x axes)."""
        self.rows = list(rows or [])
        view = self.view()
        key = (version, rows_version, self.log_scale, len(self.markers), len(self.resume_markers), len(self.val_points),
               self.size.width, self.size.height, len(self.alert_markers), len(self.epoch_marks), self.axis,
               self.view_key, self.smoothing)
        if key == self._drawn_key:
            return
        plot = composed_plot(self)
        if plot is None:  # not composed yet: the next tick draws
            return
        self._drawn_key = key
        plot.clear()
        width = max(10, self.size.width - 8)
        axis = self.axis if self.rows else "iteration"
        scale = time_scale(axis, self.rows[-1].active_seconds if self.rows else 0.0)
        self.x_axis.kind = "metric" if axis == "active" else "count"
        alpha = 1.0 - self.smoothing
        nans: list[Point] = []
        if view.key == "loss":
            finite_points = [p for p in points if math.isfinite(p[1])]
            placed = self._placed(points, axis, scale)
            smooth = list(zip([p[0] for p in placed], ema([p[1] for p in placed], alpha))) if self.smoothing else []
            main, val, raw = placed, self._placed(self.val_points, axis, scale), finite_points
            # as few columns as the epoch marks: a loss that stays NaN must not wall off the chart
            nans = self._placed(spread(nonfinite, self._most_columns()), axis, scale)
        elif view.value is not None:
            main = [(x / scale, y) for x, y in timeline_series(self.rows, view, axis)]
            smooth = (list(zip([p[0] for p in main], ema([p[1] for p in main], alpha)))
                      if self.smoothing and view.smoothed else [])
            val, raw = [], main
        else:
            name = view.key.split(":", 1)[1]
            main = self._placed([(x, f[name]) for x, f in self.val_epochs if name in f], axis, scale)
            smooth, val, raw = [], main, main
        main_drawn, smooth_drawn, val, note, logged = self._series(thin(main, 2 * width), thin(smooth, 2 * width), val,
                                                                   raw, self._label(view))
        columns = self._marks(axis, scale) + [(x, "nan", "") for x, _ in nans]
        ends = [main[0][0], main[-1][0]] if main else []  # thinning averages x: the thinned line stops short
        grid = self._limits(plot, [main_drawn, smooth_drawn, val], ends + [x for x, _, _ in columns],
                            f"log10 {self._label(view)}" if logged else self._label(view), pad=view.key != "loss")
        plot.set_xlabel(axis_title(axis, scale))
        off = self.y_offset
        line = "train" if view.key == "loss" else "figure"
        draw_columns(plot, grid, [c for c in columns if c[1] == "epoch"])  # under the lines: drawn first
        for kind, series in ((line, main_drawn), ("smoothed", smooth_drawn)):
            if series:
                plot.plot([p[0] for p in series], [p[1] - off for p in series], line_style=MARKS[kind].style,
                          hires_mode=MARKS[kind].hires, label=kind)
        draw_columns(plot, grid, [c for c in columns if c[1] != "epoch"])
        draw_points(plot, grid, [(x, y - off) for x, y in val], "val", most=grid.cols // 3)
        draw_labels(plot, grid, columns)
        if not main_drawn and not val:
            draw_note(plot, grid, empty_note(view))
        if note != self.log_note:
            self.log_note = note
            if self._snapshot is not None:
                self.show(self._snapshot)

    def _most_columns(self) -> int:
        """How many epoch (or NaN) columns the chart draws at most: one every ~8 cells of its width."""
        return max(2, (self.size.width - 8) // 8)

    def _placed(self, points: list[Point], axis: str, scale: float) -> list[Point]:
        """`points` (x a global iteration) on the chart's axis; the iteration axis as they are."""
        if axis == "iteration":
            return list(points)
        return [(x / scale, y) for x, y in on_axis(points, self.rows, axis)]


def _wide(plot: PlotWidget, label: str) -> str:
    """`label` for the y title: whole (shortened with `…` past the plot's width), over the whole row (chart.y_title)."""
    return y_title(label, plot.margin_left - 2, plot.query_one("#margin-top").size.width)
