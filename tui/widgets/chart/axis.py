"""The chart's axes: ticks at round numbers whose labels fit, whole, in the cells textual-plot gives them."""

from __future__ import annotations

import math
from typing import Callable, Sequence

from textual_plot.axis_formatter import AxisFormatter

from trainmon.engine.core.format import tick_labels


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

    Along x a label needs its own width plus a space (at most 12 ticks), and a tick whose centred label
    would run past the plot's right edge is left out (textual-plot cuts it: `300` for 3000); along y ticks
    stay 1.5 rows apart, and a label wider than `label_width` would be cut by the plot's margin (LossPane
    then shifts the data).
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

        ticks = nice_ticks(min_, max_, fits, whole=self.kind == "count", most=max_ticks if self.vertical else 12)
        if self.vertical:
            return ticks
        while True:  # dropping a tick can shorten the others' labels (`12.5k` → `12k`): until none is cut
            whole = [t for t, label in zip(ticks, self.get_labels_for_ticks(ticks))
                     if self._ends_inside(t, label, min_, max_, cells)]
            if whole == ticks:
                return ticks
            ticks = whole

    @staticmethod
    def _ends_inside(tick: float, label: str, min_: float, max_: float, cells: int) -> bool:
        """Whether textual-plot writes `label` whole under `tick`: it centres a label on the tick's column
        (1 to `cells`, right of a 1-cell frame), `len // 2` cells to the right, and cuts it at the frame's
        far side (column `cells + 1`); a tick at `max_` it aligns right instead."""
        if tick == max_:
            return True
        column = math.floor(1 + (tick - min_) / (max_ - min_) * cells)
        return column + len(label) // 2 <= cells + 1

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


def y_title(label: str, column: int, width: int, cover: int = 40) -> str:
    """`label` as the text of textual-plot's y title, which it centres on `column` of a row `width` cells wide (the
    plot's) and never clears: centred in `cover` spaces where it fits so (which covers any title drawn before it),
    else from the row's first cell (`log10 % of loop time` lost its `l`), shortened with `…` to what `cover` reaches."""
    first = column - cover // 2 + 1  # where textual-plot starts an even-length text centred on `column`
    most = max(1, min(width, cover + first))
    label = label if len(label) <= most else label[:most - 1] + "…"
    centred = label.center(cover)
    if first + centred.index(label) >= 0:
        return centred
    return " " * -first + label.ljust(cover + first)


def offset_text(offset: float) -> str:
    """`+ 1.5e6` for an offset of -1.5e6 (what the y axis label adds to the loss), every figure kept."""
    x = abs(offset)
    figures = next((d for d in range(1, 8) if float(f"{x:.{d - 1}e}") == x), 7)  # short: at most 7 figures
    mantissa, exponent = f"{x:.{figures - 1}e}".split("e")
    text = f"{x:.{max(0, figures - 1 - int(exponent))}f}" if 0 <= int(exponent) < 4 else f"{mantissa}e{int(exponent)}"
    return f"{'+' if offset < 0 else '−'} {text}"
