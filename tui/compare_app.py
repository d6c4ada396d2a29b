"""`trainmon compare` in a terminal: an app whose one screen is the compare view."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from .screens.compare_screen import CompareScreen


class StandaloneCompareScreen(CompareScreen):
    """The compare view as `trainmon compare`'s only screen: q quits (over the runs screen it goes back)."""

    CSS_PATH = "screens/runs.tcss"  # relative to this module's folder
    BINDINGS = [Binding("escape,q", "close", "Quit", key_display="q")]


class CompareApp(App[None]):
    """The runs at `paths` compared (curves, legend, table); q closes it."""

    TITLE = "trainmon compare"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self.paths = paths

    def on_mount(self) -> None:
        self.push_screen(StandaloneCompareScreen(self.paths))
