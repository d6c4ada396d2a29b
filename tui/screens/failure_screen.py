"""The loop raised: its traceback, inside the app, until the user quits."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static


class FailureScreen(Screen[None]):
    """Shows `message` and `traceback` under `title` (FAILED, or LOST for an engine that vanished);
    `q` quits the app (exit code 1)."""

    BINDINGS = [Binding("q", "app.quit_run", "Quit"), Binding("escape", "back", "Back to the run")]

    def __init__(self, message: str, traceback: str, title: str = "FAILED") -> None:
        super().__init__()
        self.message, self.traceback, self.title_word = message, traceback, title

    def compose(self) -> ComposeResult:
        yield Static(Text(f" {self.title_word}  {self.message}", style="bold"), id="failure-title")
        with VerticalScroll(id="failure-body"):
            yield Static(Text(self.traceback), id="traceback")
        yield Footer()

    def action_back(self) -> None:
        self.app.pop_screen()
