"""A Static that redraws only when its text changes and re-lays out only when its line count does.

Each `Static.update` normally asks for a layout pass of the whole screen; at 10 Hz over several
panes that was most of the app's CPU (measured: ~40% of a core on 2 cores, taken from training).
"""

from __future__ import annotations

from textual.widgets import Static


class QuietStatic(Static):
    """`show_text(markup)` skips identical updates; layout only when the number of lines changes."""

    _last_text: str | None = None
    _last_lines: int = -1

    def show_text(self, text: str) -> None:
        if text == self._last_text:
            return
        lines = text.count("\n") + 1
        self.update(text, layout=lines != self._last_lines)
        self._last_text, self._last_lines = text, lines
