"""Training loss per iteration (raw and smoothed), validation loss per epoch, change markers."""

from __future__ import annotations

import math
from typing import Optional

from textual.app import ComposeResult
from textual.containers import Vertical
from textual_plot import HiResMode, PlotWidget

from trainmon.engine.history import Point
from trainmon.engine.messages import Snapshot
from trainmon.engine.numbers import SCREEN, metric

from .quiet import QuietStatic


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


def spread(items: list, limit: int) -> list:
    """At most `limit` items picked evenly across `items`, first and last included."""
    if len(items) <= limit:
        return list(items)
    step = (len(items) - 1) / (limit - 1)
    return [items[round(i * step)] for i in range(limit)]


class LossPane(Vertical):
    """A textual-plot chart and a line of current/best values. `draw()` is called at a few hertz at most."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.log_scale = False
        self.markers: list[tuple[float, str]] = []  # (global iteration, label) where b or k changed
        self.val_points: list[Point] = []  # (global iteration, val loss) per epoch
        self._drawn_key: Optional[tuple] = None

    def compose(self) -> ComposeResult:
        plot = PlotWidget(id="loss-plot", allow_pan_and_zoom=False)
        plot.can_focus = False  # its zoom keys (+, -) must not shadow the app's batch-size keys
        yield plot
        yield QuietStatic(id="loss-values")

    def on_mount(self) -> None:
        self.border_title = "Loss"
        # The legend lives in our own text line: the plot's floating legend re-lays out the screen on
        # every redraw (measured: most of the app's CPU) and covers the newest points.
        self.query_one(PlotWidget).show_legend(is_visible=False)

    def show(self, s: Snapshot) -> None:
        val = ""
        if s.val_loss is not None:
            val = f" · val {metric(s.val_loss, SCREEN)} (best {metric(s.best_val_loss, SCREEN)})"
            for name, value in s.val_metrics.items():
                val += f" · val {name} {metric(value, SCREEN)}"
        flags = ""
        if s.nonfinite_count:
            flags = f"\n[b red]NaN/Inf losses: {s.nonfinite_count}, last at iteration {s.last_nonfinite_iteration}[/]"
        scale = " · log10 scale" if self.log_scale else ""
        self.query_one("#loss-values", QuietStatic).show_text(
            f"loss {metric(s.loss, SCREEN)} (best {metric(s.best_loss, SCREEN)})"
            f" · window {metric(s.window_loss, SCREEN)} · epoch {metric(s.epoch_loss, SCREEN)}"
            f"{val}{flags}\n[dim]{LEGEND}{scale}[/]"
        )

    def _guard_limits(self, plot: PlotWidget, pts: list[Point], tf) -> None:
        """textual-plot cannot scale a zero-width range (one point, a flat line): widen it by hand."""
        xs = [p[0] for p in pts] + [p[0] for p in self.val_points]
        ys = [tf(p[1]) for p in pts] + [tf(p[1]) for p in self.val_points]
        ys = [y for y in ys if math.isfinite(y)]
        if xs and max(xs) - min(xs) < 1e-9:
            plot.set_xlimits(min(xs) - 1, max(xs) + 1)
        else:
            plot.set_xlimits(None, None)
        if ys and max(ys) - min(ys) < 1e-9 * max(1.0, abs(ys[0])):
            pad = max(abs(ys[0]) * 0.05, 1e-3)
            plot.set_ylimits(ys[0] - pad, ys[0] + pad)
        else:
            plot.set_ylimits(None, None)

    def draw(self, points: list[Point], nonfinite: list[Point], version: int) -> None:
        """Redraw the chart if anything changed since the last draw."""
        key = (version, self.log_scale, len(self.markers), len(self.val_points), self.size.width)
        if key == self._drawn_key:
            return
        self._drawn_key = key
        plot = self.query_one(PlotWidget)
        plot.clear()
        width = max(10, self.size.width - 8)
        pts = thin(points, 2 * width)
        tf = (lambda y: math.log10(y) if y > 0 else float("nan")) if self.log_scale else (lambda y: y)
        plot.set_ylabel("log10 loss" if self.log_scale else "loss")
        plot.set_xlabel("global iteration")
        if pts:
            xs = [p[0] for p in pts]
            plot.plot(xs, [tf(p[1]) for p in pts], line_style="grey50", hires_mode=HiResMode.BRAILLE, label="train")
            plot.plot(xs, [tf(v) for v in ema([p[1] for p in pts])], line_style="bold cyan",
                      hires_mode=HiResMode.BRAILLE, label="smoothed")
        if self.val_points:
            plot.scatter([p[0] for p in self.val_points], [tf(p[1]) for p in self.val_points], marker="◆",
                         marker_style="bold yellow", label="val")
        self._guard_limits(plot, pts, tf)
        for x, label in self.markers:
            plot.add_v_line(x, line_style="magenta", label=label)
        for x, _ in spread(nonfinite, 20):
            plot.add_v_line(x, line_style="bold red", label="NaN/Inf")

