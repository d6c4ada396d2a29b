"""A Static that redraws only when its text changes and re-lays out only when its height would.

Each `Static.update` normally asks for a layout pass of the whole screen; at 10 Hz over several
panes that was most of the app's CPU (measured: ~40% of a core on 2 cores, taken from training).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


def visual_lines(text: str, width: int) -> int:
    """Rows `text` (Rich markup) takes when wrapped at `width` cells (roughly: word breaks ignored)."""
    if width <= 0:
        return -1
    rows = 0
    for line in text.split("\n"):
        cells = Text.from_markup(line).cell_len
        rows += max(1, -(-cells // width))
    return rows


class QuietStatic(Static):
    """`show_text(markup)` skips identical updates and asks for layout only when the height changes."""

    _last_text: str | None = None
    _last_rows: int = -1

    def show_text(self, text: str) -> None:
        if text == self._last_text:
            return
        rows = visual_lines(text, self.content_size.width)
        self.update(text, layout=rows != self._last_rows or rows < 0)
        self._last_text, self._last_rows = text, rows


SEPARATOR = " [dim]·[/] "


def cells(markup: str) -> int:
    """Cells `markup` takes on screen."""
    return Text.from_markup(markup).cell_len


def flow(groups: list[str], width: int, separator: str = SEPARATOR, indent: str = "") -> str:
    """Markup `groups` (a label with its value: `val acc 0.9917`) joined by `separator`, broken between two
    groups, never inside one, where the next would pass `width` cells; lines after the first start with
    `indent`. A group wider than `width` keeps its own line (the widget then wraps it as it can)."""
    groups = [g for g in groups if g]
    if width <= 0:
        return separator.join(groups)
    lines: list[str] = []
    line, used = "", 0
    sep = cells(separator)
    for group in groups:
        size = cells(group)
        if line and used + sep + size > width:
            lines.append(line)
            line, used = indent + group, cells(indent) + size
        elif line:
            line, used = line + separator + group, used + sep + size
        else:
            line, used = group, size
    lines.append(line)
    return "\n".join(lines)


class FlowStatic(QuietStatic):
    """`show_lines([...])`: each line a markup string, or a list of groups laid out by `flow` at the widget's
    width (again when it is resized), so a label never ends one row while its value starts the next."""

    _lines: list = []
    _flowed: str | None = None  # the text the lines gave (a later `show_text` of other text ends the flow)

    def show_lines(self, lines: list, indent: str = "") -> None:
        self._lines, self._indent = lines, indent
        self._flow()

    def _flow(self) -> None:
        width = self.content_size.width
        self._flowed = "\n".join(line if isinstance(line, str) else flow(line, width, indent=self._indent)
                                 for line in self._lines)
        self.show_text(self._flowed)

    def on_resize(self) -> None:
        if self._lines and self._last_text == self._flowed:
            self._flow()
