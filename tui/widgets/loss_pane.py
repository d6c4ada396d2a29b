"""Training loss per iteration (raw and smoothed), validation loss per epoch, change markers."""

from __future__ import annotations

import math
from typing import Optional

from textual.app import ComposeResult
from textual.containers import Vertical
from textual_plot import PlotWidget

from trainmon.engine.core.format import SCREEN, metric
from trainmon.engine.core.history import Point
from trainmon.engine.core.messages import Snapshot

from .chart import (
    MARKS,
    ChartAxis,
    Grid,
    draw_columns,
    draw_labels,
    draw_points,
    ema,
    legend,
    offset_for,
    offset_text,
    spread,
    thin,
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
        kinds = LEGEND + (("resumed",) if self.resume_markers else ()) + (("alert",) if self.alert_markers else ())
        lines = [value_groups(s, self.best), flags, note, legend(kinds) + f"[dim]{scale}[/]"]
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

    def _limits(self, plot: PlotWidget, series: list[list[Point]], lines: list[float], base_label: str) -> Grid:
        """Finite axis limits from what is drawn (textual-plot cannot scale a zero-width range, and a
        NaN would blank the chart), and an offset when the y labels would not fit (see `offset_for`).
        The grid of cells those limits give."""
        canvas = plot.query_one("#plot")  # the scale rectangle is the canvas less its 1-cell frame
        cols, rows = max(1, canvas.size.width - 2), max(1, canvas.size.height - 2)
        xs = [p[0] for s in series for p in s] + lines
        ys = [p[1] for s in series for p in s]
        x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
        if x_hi - x_lo < 1e-9:
            x_lo, x_hi = x_lo - 1, x_hi + 1
        plot.set_xlimits(x_lo, x_hi)
        self.y_offset = 0.0
        if not ys:
            plot.set_ylimits(0, 1)
            plot.set_ylabel(base_label)
            return Grid(x_lo, x_hi, 0.0, 1.0, cols, rows)
        low, high = min(ys), max(ys)
        if high - low <= 1e-9 * abs(low):  # a flat line: ±5% around it (±1e-3 around 0), whatever its size
            pad = abs(low) * 0.05 or 1e-3
            low, high = low - pad, high + pad
        self.y_offset = offset_for(low, high, self.y_axis)
        plot.set_ylimits(low - self.y_offset, high - self.y_offset)
        plot.set_ylabel(f"{base_label} {offset_text(self.y_offset)}" if self.y_offset else base_label)
        return Grid(x_lo, x_hi, low - self.y_offset, high - self.y_offset, cols, rows)

    def draw(self, points: list[Point], nonfinite: list[Point], version: int) -> None:
        """Redraw the chart if anything changed since the last draw. Drawn in this order, each over the
        ones before: train line, smoothed line, the b/k, resume, NaN and alert columns, validation points (at most
        one per 3 columns, so that many epochs leave the train line in sight), the columns' labels."""
        key = (version, self.log_scale, len(self.markers), len(self.resume_markers), len(self.val_points),
               self.size.width, self.size.height, len(self.alert_markers))
        if key == self._drawn_key:
            return
        self._drawn_key = key
        plot = self.query_one(PlotWidget)
        plot.clear()
        width = max(10, self.size.width - 8)
        train, smooth, val, note, logged = self._series(thin(points, 2 * width), points)
        # x spans the whole run: thinning averages x too, so the thinned series would stop short of the end
        ends = [points[0][0], points[-1][0]] if points else []
        nans = spread(nonfinite, 20)
        columns = ([(x, "change", label) for x, label in self.markers] + [(x, "resumed", "") for x in self.resume_markers]
                   + [(x, "nan", "") for x, _ in nans] + [(x, "alert", kind) for x, kind in spread(self.alert_markers, 20)])
        grid = self._limits(plot, [train, smooth, val], ends + [x for x, _, _ in columns],
                            "log10 loss" if logged else "loss")
        plot.set_xlabel("global iteration")
        off = self.y_offset
        for kind, series in (("train", train), ("smoothed", smooth)):
            if series:
                plot.plot([p[0] for p in series], [p[1] - off for p in series], line_style=MARKS[kind].style,
                          hires_mode=MARKS[kind].hires, label=kind)
        draw_columns(plot, grid, columns)
        draw_points(plot, grid, [(x, y - off) for x, y in val], "val", most=grid.cols // 3)
        draw_labels(plot, grid, columns)
        if note != self.log_note:
            self.log_note = note
            if self._snapshot is not None:
                self.show(self._snapshot)
