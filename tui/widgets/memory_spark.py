"""The memory sparkline, its bars measured from a floor (0 MiB): a few MiB of change stay a few MiB high."""

from __future__ import annotations

from textual.app import RenderResult
from textual.widgets import Sparkline

from ..compat import FlooredSparklineRenderable


class MemorySpark(Sparkline):
    """Textual's `Sparkline` whose bars run from `floor` (0 MiB unless set; lower if a value is lower) to
    the largest value, not from the smallest: 390 to 397 MiB draws nearly full bars, not a cliff."""

    floor = 0.0

    def render(self) -> RenderResult:
        default = super().render()
        data = list(self.data or [])
        if not data:
            return default
        return FlooredSparklineRenderable([min(self.floor, *data), *data], width=default.width,
                                          height=default.height, min_color=default.min_color.color,
                                          max_color=default.max_color.color, summary_function=self.summary_function)
