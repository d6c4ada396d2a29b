"""Several runs' loss curves on one chart, a colour a run: the training loss (smoothed, so that eight noisy
lines stay apart) and the validation loss at each epoch end, with a legend line naming each run."""

from __future__ import annotations

import math
from typing import Any, Optional

from textual.app import ComposeResult
from textual.containers import Vertical
from textual_plot import HiResMode, PlotWidget

from trainmon.engine.core.history import Point
from trainmon.tui.compat import composed_plot

from .chart import ChartAxis, Grid, ema, offset_for, offset_text, spread, thin
from .quiet import FlowStatic

# eight colours told apart on a dark terminal (and their glyphs under NO_COLOR: the legend's first letter)
RUN_COLOURS = ("#29b6f6", "#ffa62b", "#4ebf71", "#ff5c8a", "#c678dd", "#ffe14d", "#8fd3ff", "#d0d0d0")
VAL_GLYPH = "◆"


def overlay_series(train: list[Point], limit: int, log: bool) -> list[Point]:
    """A run's training curve as drawn: finite points thinned to `limit`, smoothed by the chart's
    debiased EMA, in log10 when `log` (losses ≤ 0 then left out)."""
    finite = [p for p in train if math.isfinite(p[1])]
    points = thin(finite, limit)
    smooth = list(zip([p[0] for p in points], ema([p[1] for p in points])))
    return [(x, math.log10(y)) for x, y in smooth if y > 0] if log else smooth


def inside(points: list[Point], grid: Grid) -> list[Point]:
    """`points` as a scatter draws them in sight: textual-plot puts x = `x_hi` and y = `y_hi` on the plot's
    frame, which is drawn over them (a run's last ◆, at the last iteration, was lost there), so those are
    pulled half a cell inside; every other point stays at its own value."""
    x_in = grid.x_hi - 0.5 * (grid.x_hi - grid.x_lo) / grid.cols
    y_in = grid.y_hi - 0.5 * (grid.y_hi - grid.y_lo) / grid.rows
    return [(min(x, x_in), min(y, y_in)) for x, y in points]


class OverlayChart(Vertical):
    """`draw(curves)` with curves as `(name, train points, val points)`, at most len(RUN_COLOURS) of them;
    redraws only when the points or the size changed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_scale = False
        self._drawn: Optional[tuple] = None
        self._curves: list[tuple[str, list[Point], list[Point]]] = []
        self.y_offset = 0.0
        self.x_title = "global iteration"  # what x is (the compare screen's `x` changes it)

    def compose(self) -> ComposeResult:
        plot = PlotWidget(id="overlay-plot", allow_pan_and_zoom=False)
        plot.can_focus = False
        yield plot
        yield FlowStatic(id="overlay-legend")

    def on_mount(self) -> None:
        plot = self.query_one(PlotWidget)
        plot.show_legend(is_visible=False)  # ours is a text line: textual-plot's floats over the newest points
        # the y label's row and the x ticks' only (the legend names the x axis): at 80×24 every row counts
        plot.margin_top, plot.margin_bottom = 1, 2
        canvas = plot.query_one("#plot")
        self.y_axis = ChartAxis("metric", vertical=True, cells=lambda: canvas.size.height - 2,
                                label_width=plot.margin_left - 1)
        self.x_axis = ChartAxis("count", vertical=False, cells=lambda: canvas.size.width - 2)
        plot.set_x_formatter(self.x_axis)
        plot.set_y_formatter(self.y_axis)

    def on_resize(self) -> None:
        # the plot's scale follows the canvas's new size; the curves as they are then (not the ones now: a
        # resize before the runs were read would wipe the curves `draw` got meanwhile)
        self.call_after_refresh(lambda: self.draw(self._curves))

    def draw(self, curves: list[tuple[str, list[Point], list[Point]]], x_title: Optional[str] = None,
             x_counts: bool = True) -> None:
        """`curves`: `(name, train points, val points)` with x already on the axis `x_title` names (kept from the
        last call when `None`); `x_counts`: whole numbers on x (counts), else a measure (time)."""
        if x_title is not None:
            self.x_title = x_title
            self.x_axis.kind = "count" if x_counts else "metric"
        curves = self._curves = curves[: len(RUN_COLOURS)]
        key = (tuple((n, len(t), t[-1] if t else None, len(v)) for n, t, v in curves), self.log_scale,
               self.size.width, self.size.height, self.x_title)
        if key == self._drawn:
            return
        plot = composed_plot(self)
        if plot is None:  # not composed yet: the next tick draws
            return
        self._drawn = key
        plot.clear()
        width = max(10, self.size.width - 8)
        drawn = []
        for name, train, val in curves:
            vals = [(x, y) for x, y in val if math.isfinite(y) and (y > 0 or not self.log_scale)]
            vals = [(x, math.log10(y)) for x, y in vals] if self.log_scale else vals
            drawn.append((name, overlay_series(train, 2 * width, self.log_scale), spread(vals, width // 3)))
        xs = [p[0] for _, t, v in drawn for p in t + v]
        ys = [p[1] for _, t, v in drawn for p in t + v]
        x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
        if x_hi - x_lo < 1e-9:
            x_lo, x_hi = x_lo - 1, x_hi + 1
        y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if y_hi - y_lo <= 1e-9 * max(1.0, abs(y_lo)):
            pad = abs(y_lo) * 0.05 or 1e-3
            y_lo, y_hi = y_lo - pad, y_hi + pad
        self.y_offset = offset_for(y_lo, y_hi, self.y_axis)
        plot.set_xlimits(x_lo, x_hi)
        plot.set_ylimits(y_lo - self.y_offset, y_hi - self.y_offset)
        canvas = plot.query_one("#plot")  # the scale rectangle is the canvas less its 1-cell frame
        grid = Grid(x_lo, x_hi, y_lo - self.y_offset, y_hi - self.y_offset, max(1, canvas.size.width - 2),
                    max(1, canvas.size.height - 2))
        label = "log10 loss" if self.log_scale else "loss"
        plot.set_ylabel(f"{label} {offset_text(self.y_offset)}" if self.y_offset else label)
        off = self.y_offset
        for (name, train, val), colour in zip(drawn, RUN_COLOURS):
            if train:
                plot.plot([x for x, _ in train], [y - off for _, y in train], line_style=colour,
                          hires_mode=HiResMode.BRAILLE, label=name)
            if val:  # the y range above holds every ◆: each is drawn, none on the frame
                shown = inside([(x, y - off) for x, y in val], grid)
                plot.scatter([x for x, _ in shown], [y for _, y in shown], marker=VAL_GLYPH, marker_style=colour)
        self.query_one("#overlay-legend", FlowStatic).show_lines([self.legend([n for n, _, _ in curves])])

    def legend(self, names: list[str]) -> list[str]:
        """Markup groups (laid out by `flow`): each run's name after a line in its colour, then what the
        marks mean."""
        runs = [f"[b {c}]━━[/] {name}" for name, c in zip(names, RUN_COLOURS)]
        scale = " (log10)" if self.log_scale else ""
        return runs + [f"[dim]line: train loss, smoothed{scale} · {VAL_GLYPH} val · x: {self.x_title}[/]"]
