"""The end of a run: its summary over the main screen, and how to close."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static


class SummaryScreen(ModalScreen[None]):
    """`rows` from `tui.summary.RunSummary.lines`; q closes trainmon, Esc goes back to the charts."""

    BINDINGS = [
        Binding("q", "app.close", "Quit trainmon"),
        Binding("escape", "back", "Back to the charts", key_display="esc"),
        Binding("a", "app.show_alerts", "Alerts", show=False),  # the app's a stops at a modal screen; the row says a
    ]

    def __init__(self, title: str, rows: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text, self.rows = title, rows

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, expand=True, padding=(0, 1))
        table.add_column("what", style="bold", no_wrap=True, width=11)
        table.add_column("figures", ratio=1)
        for label, text in self.rows:  # a path longer than the column folds onto the next row, never `…`
            table.add_row(label, Text.from_markup(text, overflow="fold"))
        with VerticalScroll(id="summary-body"):
            yield Static(table, id="summary")
            yield Static("[dim]q: quit trainmon · esc: back to the charts (q there quits too)[/]", id="summary-keys")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#summary-body").border_title = self.title_text

    def action_back(self) -> None:
        self.dismiss(None)
