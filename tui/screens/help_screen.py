"""The teaching screen: the glossary computed with the live run's numbers, and the keys."""

from __future__ import annotations

from typing import Callable, Optional

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from trainmon.engine.core.messages import Snapshot

from ..teaching import glossary

REFRESH_SECONDS = 1.0  # the glossary follows the run while it is open


class HelpScreen(ModalScreen[None]):
    """`?`: what every number on the main screen means, with this run's values; `live()` gives the run's newest
    snapshot, read again every `REFRESH_SECONDS` while the screen is open (the numbers move with the run)."""

    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss_help", "Close help", key_display="esc/q"),
    ]

    def __init__(self, snapshot: Snapshot, keys: list[tuple[str, str]],
                 live: Optional[Callable[[], Snapshot]] = None) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.keys = keys
        self.live = live

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(self._glossary_table(), id="glossary")
            yield Static(self._keys_table(), id="keys")
            yield Static("[dim]esc, q or ?: back to the run[/]")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#help-body").border_title = "What the numbers mean — this run"
        if self.live is not None:
            self.set_interval(REFRESH_SECONDS, self._follow)

    def _follow(self) -> None:
        newest = self.live() if self.live is not None else self.snapshot
        if newest is not self.snapshot:
            self.snapshot = newest
            self.query_one("#glossary", Static).update(self._glossary_table())

    def _glossary_table(self) -> Table:
        table = Table(box=None, show_header=False, expand=True, padding=(0, 1))
        table.add_column("term", style="bold cyan", no_wrap=True, width=24)
        table.add_column("meaning", ratio=1)
        for term, sentence in glossary(self.snapshot):
            table.add_row(term, sentence)
        return table

    def _keys_table(self) -> Table:
        table = Table(title="keys", box=None, show_header=False, padding=(0, 1), title_justify="left")
        table.add_column("key", style="bold", no_wrap=True, width=12)
        table.add_column("does")
        for key, text in self.keys:
            table.add_row(key, text)
        return table

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
