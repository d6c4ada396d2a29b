"""Every use of Textual's private parts, and every patch of a library, in one module.

trainmon needs a few things Textual offers no public API for: the hook every frame passes on its way
to the terminal (so `terminal_diff` can send only the changed cells), the class of a compositor
frame, the inner bar of a `ProgressBar` (so an indeterminate bar can stand still while paused), the
scale of a sparkline (from a floor, not its smallest value), and one filter fixed. No other module
under tui/ may name a private Textual part (`textual._*`, `textual.widgets._*`, `super()._display`):
they import what they need from here, so a Textual upgrade breaks this file and no other.

Each shim below says which Textual versions it was checked on and why it exists.
`tests/test_textual_compat.py` fails, naming the shim, when the installed Textual no longer has
what a shim relies on; pyproject.toml pins textual to the versions they were checked on. To move
the pin: install the new Textual, run that test and the tui tests, fix the shims here, widen the pin.
"""

from __future__ import annotations

from functools import wraps
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual import filter as textual_filter
from textual._compositor import CompositorUpdate  # private: [compositor frame]
from textual.renderables.sparkline import Sparkline as SparklineRenderable
from textual.widgets import ProgressBar
from textual.widgets._progress_bar import Bar  # private: [progress bar's bar]

# --------------------------------------------------------------------------- [frame hook]
# Private: `App._display(screen, renderable)`. Checked on textual 8.2.0 and 8.2.8.
# Every frame reaches the terminal through this method: `renderable` is a `CompositorUpdate` (see
# [compositor frame]), another Rich renderable, or None. Textual has no public hook between the
# compositor and the driver (`post_display_hook` runs after the write), and `terminal_diff` must
# rewrite a frame's bytes before they are written.


class FrameHook:
    """Mixin for an `App`, listed before it: `filter_frame(renderable)` sees every frame before it is
    written and returns what is written instead (by default the frame itself)."""

    def filter_frame(self, renderable: Any) -> Any:
        return renderable

    def _display(self, screen: Any, renderable: Any) -> None:
        super()._display(screen, self.filter_frame(renderable))


# --------------------------------------------------------------------------- [compositor frame]
# Private: `textual._compositor.CompositorUpdate`. Checked on textual 8.2.0 and 8.2.8.
# `App._display` writes a `CompositorUpdate` as `render_segments(console) -> str` (cursor moves, SGR
# colours, text) and hands anything else to Rich. A frame whose bytes are rewritten must therefore
# still be a `CompositorUpdate`, and must keep `__rich_console__` for the Rich path.

def is_frame(renderable: Any) -> bool:
    """True when `renderable` is a compositor frame, written by `App._display` as raw bytes."""
    return isinstance(renderable, CompositorUpdate)


class RewrittenFrame(CompositorUpdate):
    """The frame `update`, its bytes passed through `rewrite` (a subclass's) when textual writes them."""

    def __init__(self, update: CompositorUpdate) -> None:
        self.update = update

    def rewrite(self, sequence: str) -> str:
        """The bytes to write instead of `sequence`, the frame's own (escape sequences and text)."""
        return sequence

    def __rich_console__(self, console, options):  # pragma: no cover - textual writes render_segments
        yield from self.update.__rich_console__(console, options)

    def render_segments(self, console) -> str:
        return self.rewrite(self.update.render_segments(console))


# --------------------------------------------------------------------------- [progress bar's bar]
# Private: `textual.widgets._progress_bar.Bar` (its constructor's `id`, `clock`, `bar_renderable`, its
# `percentage` reactive and `watch_percentage`) and `ProgressBar._clock`. Checked on textual 8.2.0 and 8.2.8.
# `ProgressBar.compose` yields a `Bar` whose indeterminate animation repaints at 15 Hz for ever, a
# paused run included (over SSH, bytes every frame). A subclass of `Bar` paces it; this builds it as
# `ProgressBar.compose` does, sharing the progress bar's clock. Textual's `ProgressBar` also calls
# `update()` with no arguments once a second (from `on_mount`), which `progress_pane.RunBar` ignores.

def progress_bar_bar(progress_bar: ProgressBar, bar_class: type[Bar] = Bar) -> Bar:
    """The bar `progress_bar.compose` would yield (id "bar", bound to its percentage and gradient),
    made of `bar_class`, a subclass of textual's `Bar`."""
    bar = bar_class(id="bar", clock=progress_bar._clock, bar_renderable=progress_bar.BAR_RENDERABLE)
    return bar.data_bind(ProgressBar.percentage).data_bind(ProgressBar.gradient)


# --------------------------------------------------------------------------- [monochrome filter]
# Patched: `textual.filter.Monochrome.apply(self, segments, background)` (public class, patched in
# place). Checked on textual 8.2.0 and 8.2.8 with textual-hires-canvas 0.14.0.
# The `Monochrome` filter (used under NO_COLOR) calls `style.color` on every segment, but
# textual-hires-canvas (under textual-plot) emits segments whose style is `None`: the app crashed with
# `AttributeError: 'NoneType' object has no attribute 'color'` as soon as the chart drew. We give
# such segments an empty style before the filter sees them. Drop this when textual handles it.

_NULL = Style.null()


def patch_monochrome_filter() -> None:
    """Make `textual.filter.Monochrome.apply` accept segments without a style (idempotent)."""
    original = textual_filter.Monochrome.apply
    if getattr(original, "_trainmon_patched", False):
        return

    @wraps(original)  # keeps the signature and docstring; `apply.__wrapped__` is textual's own
    def apply(self, segments, background):
        fixed = [seg if seg.style is not None else Segment(seg.text, _NULL, seg.control) for seg in segments]
        return original(self, fixed, background)

    apply._trainmon_patched = True
    textual_filter.Monochrome.apply = apply


# --------------------------------------------------------------------------- [sparkline floor]
# Private: `textual.renderables.sparkline.Sparkline._buckets(data, num_buckets)` (a classmethod the
# renderable calls as `self._buckets(list(self.data), num_buckets=width)`), checked on textual 8.2.8.
# The renderable scales its bars from `min(self.data)` to `max(self.data)`, with no way to set either:
# memory at 390-397 MiB filled the bars' whole height, so a few MiB looked like a cliff. The floor goes
# first in the data, where `min` sees it, and is left out of the buckets, where it would be a bar.

class FlooredSparklineRenderable(SparklineRenderable):
    """Textual's sparkline renderable for `[floor, *values]`: bars for `values`, scaled from `floor`
    (at most the smallest value) to the largest."""

    @classmethod
    def _buckets(cls, data, num_buckets):
        return super()._buckets(data[1:], num_buckets)


# --------------------------------------------------------------------------- [terminal write]
# Private: `App._driver` (None until the app runs) and its `write(str)`. Checked on textual 8.2.8.
# Textual writes escape sequences of its own this way (`App.bell`, OSC 52 in `App.copy_to_clipboard`) and
# offers no public call for one of ours: the OSC 9 desktop notification of an alert. `App.bell()` skips a
# headless driver; this does not (a headless driver's `write` does nothing), so tests can read both.

def write_to_terminal(app: Any, text: str) -> bool:
    """Write `text` (escape sequences: a bell, an OSC) to `app`'s terminal, after the frames before it
    (a terminal or a browser through textual-serve). False when the app has no driver (not running)."""
    driver = getattr(app, "_driver", None)
    if driver is None:
        return False
    driver.write(text)
    return True


# --------------------------------------------------------------------------- [plot composed]
# textual-plot's `PlotWidget.clear()`, `plot()` and `show_legend()` query its own `#legend` child
# (checked on textual-plot as pinned). A widget's timer can fire after the widget is mounted but before
# the plot inside it has composed its children, or while a screen is torn down; `clear()` then raises
# NoMatches and the app ends. Draw only through this.


def composed_plot(owner: Any) -> Any:
    """`owner`'s `PlotWidget` once it has composed its children, else None (draw later)."""
    from textual.css.query import NoMatches
    from textual_plot import PlotWidget

    try:
        plot = owner.query_one(PlotWidget)
        plot.query_one("#legend")
    except NoMatches:
        return None
    return plot
