"""`trainmon compare` in a terminal: an app whose one screen is the compare view."""

from __future__ import annotations

from pathlib import Path

from textual.app import App

from .screens.compare_screen import CompareScreen


class CompareApp(App[None]):
    """The runs at `paths` compared (curves, legend, table); q closes it."""

    TITLE = "trainmon compare"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self.paths = paths

    def on_mount(self) -> None:
        self.push_screen(CompareScreen(self.paths))
