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
