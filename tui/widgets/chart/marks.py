"""The chart's marks: one table of glyph and style per kind, read by the chart when it draws and by its
legend, so the two always agree, in colour and, under NO_COLOR, by glyph alone."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Iterable, Optional

from textual_plot import HiResMode, PlotWidget

from trainmon.engine.core.history import Point

from .series import spread


@dataclass(frozen=True)
class Mark:
    """How one kind of mark looks. `glyph` is what the legend shows and what a point or a column is drawn
    with; a line is drawn in `hires`'s glyphs, `glyph` being one of them. `style` is a Rich style."""

    glyph: str
    style: str
    word: str
    hires: Optional[HiResMode] = None


NOTE_STYLE = "italic #d7d7d7"  # a chart's words in the plot: why it is empty

# Colours as hex: the chart (Rich styles, through textual-plot) and the legend (Textual markup) read the
# names of ANSI colours differently (`yellow` is #fd971f on the chart and #ffff00 in the legend).
MARKS = {
    "train": Mark("⠒", "#8a8a8a", "train", HiResMode.BRAILLE),  # fine dots: every iteration, noisy
    "smoothed": Mark("▀", "bold #29b6f6", "smoothed", HiResMode.QUADRANT),  # solid blocks: the trend
    "val": Mark("◆", "bold #ffa62b", "val"),
    "change": Mark("┆", "#c678dd", "b/k"),  # topped by its label: `b 32→64`, `k 1→2` (or `b`, `k`)
    "nan": Mark("!", "bold #ff4040", "NaN"),
    "resumed": Mark("║", "bold #4ebf71", "resumed"),
    # a solid half block, topped by the alert's kind (`nan`, `stall`); the badge's colour. Not `┃`: the frame's
    "alert": Mark("▌", "bold #ffe14d", "alert"),
    "epoch": Mark("╎", "#5f87af", "epoch"),  # an epoch's end (from its EpochEnded), drawn under every other mark
    "figure": Mark("⠒", "bold #e5e5e5", "value", HiResMode.BRAILLE),  # a timeline chart's line; its word: the figure
}


def legend(kinds: Iterable[str], words: Optional[dict[str, str]] = None) -> str:
    """Markup for the legend of `kinds` (keys of MARKS): each glyph in its chart style, the words dimmed (`words`
    replaces a kind's word: `figure` is named after what it shows)."""
    words = words or {}
    return " ".join(f"[{MARKS[k].style}]{MARKS[k].glyph}[/][dim]{words.get(k, MARKS[k].word)}[/]" for k in kinds)


@dataclass(frozen=True)
class Grid:
    """The cells textual-plot maps values to, inside the plot canvas's 1-cell frame: columns 1 to `cols`
    for x from `x_lo` to `x_hi`, rows 1 (y = `y_hi`) to `rows` (y = `y_lo`), rounded as its
    `map_coordinate_to_pixel` rounds them, except that x = `x_hi` or y = `y_hi`, which textual-plot puts on
    the frame (drawn over it: the last validation ◆ was lost there), is kept in the last cell inside."""

    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float
    cols: int
    rows: int

    def column(self, x: float) -> int:
        """The column (1 to `cols`) that x falls in."""
        return min(self.cols, max(1, math.floor(1 + (x - self.x_lo) / (self.x_hi - self.x_lo) * self.cols)))

    def row(self, y: float) -> int:
        """The row (1 at the top to `rows`) that y falls in."""
        return min(self.rows, max(1, math.ceil((self.y_hi - y) / (self.y_hi - self.y_lo) * self.rows)))

    def x_at(self, column: int) -> float:
        """The x in the middle of `column`."""
        return self.x_lo + (column - 0.5) / self.cols * (self.x_hi - self.x_lo)

    def y_at(self, row: int) -> float:
        """The y in the middle of `row` (1 is the top)."""
        return self.y_hi - (row - 0.5) / self.rows * (self.y_hi - self.y_lo)


def _cells(plot: PlotWidget, grid: Grid, cells: list[tuple[int, int, str]], style: str) -> None:
    """Write characters at (column, row) cells, one scatter per character (textual-plot's public way)."""
    by_char: dict[str, list[tuple[int, int]]] = {}
    for col, row, ch in cells:
        by_char.setdefault(ch, []).append((col, row))
    for ch, where in by_char.items():
        plot.scatter([grid.x_at(c) for c, _ in where], [grid.y_at(r) for _, r in where], marker=ch,
                     marker_style=style)


def draw_columns(plot: PlotWidget, grid: Grid, marks: list[tuple[float, str, str]]) -> None:
    """A column of its kind's glyph at each (x, kind, label), from the chart's second row down (its top
    row too when it has no label; `draw_labels` writes them, last, so that no mark covers them)."""
    for kind in dict.fromkeys(k for _, k, _ in marks):
        cells = [(grid.column(x), row, MARKS[kind].glyph) for x, k, label in marks if k == kind
                 for row in range(2 if label else 1, grid.rows + 1)]
        _cells(plot, grid, cells, MARKS[kind].style)


def draw_labels(plot: PlotWidget, grid: Grid, marks: list[tuple[float, str, str]]) -> None:
    """Each mark's label on the chart's top row from its column: whole where it ends a cell before the next
    label and inside the chart, else its first letter (`b` or `k`); never cut."""
    by_column: dict[int, list[tuple[str, str]]] = {}
    for x, kind, label in marks:
        if label:  # marks in one column share one label (`b 32→128 k 4→6`, or `bk`): never one over another
            by_column.setdefault(grid.column(x), []).append((kind, label))
    placed = sorted(by_column.items())
    for i, (col, labels) in enumerate(placed):
        after = placed[i + 1][0] if i + 1 < len(placed) else grid.cols + 2
        whole = " ".join(label for _, label in labels)
        text = whole if col + len(whole) <= min(after - 1, grid.cols + 1) else "".join(label[0] for _, label in labels)
        _cells(plot, grid, [(col + j, 1, ch) for j, ch in enumerate(text)], MARKS[labels[0][0]].style)


def draw_points(plot: PlotWidget, grid: Grid, points: list[Point], kind: str, most: int) -> None:
    """One glyph at each point, at most `most` of them picked evenly (the last always), so that a long
    run's points leave the line under them in sight."""
    shown = spread(points, max(1, most))
    if shown:
        # each at its own value, only pulled half a cell inside where it would sit on the frame (x = x_hi or
        # y = y_hi): snapped to `grid`'s cells it could land a row off, the plot's own scale being its to choose
        x_in = grid.x_hi - 0.5 * (grid.x_hi - grid.x_lo) / grid.cols
        y_in = grid.y_hi - 0.5 * (grid.y_hi - grid.y_lo) / grid.rows
        plot.scatter([min(x, x_in) for x, _ in shown], [min(y, y_in) for _, y in shown],
                     marker=MARKS[kind].glyph, marker_style=MARKS[kind].style)


def draw_note(plot: PlotWidget, grid: Grid, text: str) -> None:
    """`text` in the middle of the chart, wrapped to its width, over a blank box (no mark shows between its words):
    a chart with nothing to draw says why."""
    lines = [f" {line} " for line in textwrap.wrap(text, max(8, grid.cols - 2), break_on_hyphens=False)][:grid.rows]
    top = max(1, (grid.rows - len(lines)) // 2 + 1)
    left = max(1, (grid.cols - max(map(len, lines), default=0)) // 2 + 1)
    _cells(plot, grid, [(left + j, top + i, ch) for i, line in enumerate(lines) for j, ch in
                        enumerate(line.ljust(max(map(len, lines)))) if left + j <= grid.cols], NOTE_STYLE)
