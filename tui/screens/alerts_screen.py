"""The run's alerts, newest first: when, what, where in the run, and the message whole."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from trainmon.engine.core.alerts import Alert

from ..alerts import STYLE, when, where


class AlertsScreen(ModalScreen[None]):
    """`a` or a click on the status line's badge: `alerts` (oldest first, as taken) listed newest first;
    `count` is how many the run raised (more than listed once the list was cut to its newest)."""

    BINDINGS = [
        Binding("escape,q,a", "close_alerts", "Back to the charts", key_display="esc/q"),
    ]

    def __init__(self, alerts: list[Alert], count: int) -> None:
        super().__init__()
        self.alerts, self.count = alerts, count

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="alerts-body"):
            yield Static(self._listing(), id="alerts")
            yield Static("[dim]esc, q or a: back to the charts · trainmon logs shows them too[/]", id="alerts-keys")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._title()

    def follow(self, alerts: list[Alert], count: int) -> None:
        """Alerts that came while the list is open: listed at once."""
        self.alerts, self.count = alerts, count
        self.query_one("#alerts", Static).update(self._listing())
        self._title()

    def _title(self) -> None:
        shown = len(self.alerts)
        more = f", the newest {shown} shown" if shown < self.count else ""
        self.query_one("#alerts-body").border_title = f"Alerts — {self.count}{more}, newest first"

    def _listing(self) -> Table | str:
        return self._table() if self.alerts else "no alerts so far: the run looks healthy"

    def _table(self) -> Table:
        table = Table(box=None, expand=True, padding=(0, 1), header_style="bold")
        table.add_column("time", no_wrap=True)
        table.add_column("kind", style=STYLE, no_wrap=True)
        table.add_column("epoch", no_wrap=True)
        table.add_column("global\niteration", no_wrap=True)
        table.add_column("message", ratio=1)
        for alert in reversed(self.alerts):
            message = Text(alert.message, overflow="fold")  # a message is the run's words: no markup
            if where(alert):
                message.append(f" ({where(alert)})", style="dim")
            table.add_row(when(alert.time), alert.kind, str(alert.epoch), str(alert.global_iteration), message)
        return table

    def action_close_alerts(self) -> None:
        self.dismiss(None)
