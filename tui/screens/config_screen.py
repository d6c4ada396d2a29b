"""`c`: the run's config — the settings as given and as resolved, the job, versions, host — from run.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from trainmon.engine.core.run_config import config_sections


def read_info(run_dir: Optional[Path]) -> Optional[dict]:
    """run.json of `run_dir`, or `None` (no directory, not readable)."""
    if run_dir is None:
        return None
    try:
        return json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, ValueError):
        return None


class ConfigScreen(ModalScreen[None]):
    """The config of the run in `run_dir`, with `snapshot` (the newest) for what the loader really yields."""

    CSS_PATH = "output.tcss"
    BINDINGS = [Binding("escape,q,c", "close_config", "Back", key_display="esc/q")]

    def __init__(self, run_dir: Optional[Path], snapshot: Any = None) -> None:
        super().__init__()
        self.run_dir, self.snapshot = run_dir, snapshot

    def compose(self) -> ComposeResult:
        with Vertical(id="config-body"):
            with VerticalScroll(id="config-scroll"):
                yield Static(self._table(), id="config")
            yield Static(Text("esc/q back · ↑↓ scroll · all of it is in the run directory's run.json", style="dim"),
                         id="config-keys")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#config-body").border_title = "The run's config"
        self.query_one("#config-scroll").focus()

    def _table(self) -> Table | str:
        info = read_info(self.run_dir)
        if info is None:
            return "This run has no run directory to read its config from (a loop in this process without one)."
        table = Table(box=None, show_header=False, expand=True, padding=(0, 1))
        table.add_column("name", style="bold", no_wrap=True, width=24)
        table.add_column("value", ratio=1, overflow="fold")
        for index, (title, rows) in enumerate(config_sections(info, self.snapshot, str(self.run_dir))):
            if index:
                table.add_row("", "")
            table.add_row(Text(title, style="bold cyan"), "")
            for name, value in rows:
                table.add_row(name, Text(value))  # the run's words: no markup
        return table

    def action_close_config(self) -> None:
        self.dismiss(None)
