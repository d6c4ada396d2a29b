"""`w` in a lesson: change batch size, accumulation, dataset size, drop_last or world size and see the epoch's
plan worked out again beside the lesson's own. Nothing is sent to the run: the lesson stays exact."""

from __future__ import annotations

from typing import Optional

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, Static

from trainmon.engine.core.arithmetic import PlanError
from trainmon.engine.core.lesson_whatif import WhatIf, compare

FIELDS = (("batch_size", "b"), ("accum", "k"), ("samples", "m"), ("world_size", "ranks"))
MAX_DIGITS = 10


def parse_whole(name: str, text: str) -> int:
    """A whole number >= 1 of at most `MAX_DIGITS` digits typed for `name`; digits only (`1e3` and `3.5` are
    refused). Raises `PlanError` (one line)."""
    text = text.strip()
    if not text.isdigit() or int(text) < 1:
        raise PlanError(f"{name} must be a whole number >= 1, got {text!r}")
    if len(text) > MAX_DIGITS:
        raise PlanError(f"{name} has more than {MAX_DIGITS} digits: {text}")
    return int(text)


def drop_last_label(on: bool) -> str:
    """The checkbox's label says its state in a word, readable without colour (NO_COLOR)."""
    return f"drop_last {'on' if on else 'off'}"


class WhatIfScreen(ModalScreen[None]):
    """The lesson's settings `now`, editable; the plan of one epoch for both, side by side."""

    BINDINGS = [Binding("escape,w", "close", "Back to the lesson", key_display="esc")]

    def __init__(self, now: WhatIf) -> None:
        super().__init__()
        self.now = now
        self.plain = ""  # what the plan area shows, as plain text (for tests)

    def compose(self) -> ComposeResult:
        with Vertical(id="whatif"):
            yield Label("What if… (the lesson's run keeps its own settings)", id="whatif-title")
            with Horizontal(id="whatif-fields"):
                for name, label in FIELDS:
                    yield Label(f"{label} ", classes="whatif-label")
                    yield Input(str(getattr(self.now, name)), id=f"whatif-{name}", compact=True,
                                restrict=r"[0-9]*")  # no max_length: a cut-off number would mislead; refused
                yield Checkbox(drop_last_label(self.now.drop_last), self.now.drop_last, id="whatif-drop_last",
                               compact=True)
            yield Static(id="whatif-plan")
            yield Label("tab: next field · esc: back to the lesson", id="whatif-hint")

    def on_mount(self) -> None:
        self.show_plan()

    @on(Input.Changed)
    @on(Checkbox.Changed)
    def show_plan(self) -> None:
        box = self.query_one("#whatif-drop_last", Checkbox)
        box.label = drop_last_label(box.value)
        changed: Optional[WhatIf] = None
        try:
            values = {name: parse_whole(label, self.query_one(f"#whatif-{name}", Input).value)
                      for name, label in FIELDS}
            changed = WhatIf(drop_last=self.query_one("#whatif-drop_last", Checkbox).value, **values)
            rows, notes = compare(self.now, changed)
        except PlanError as exc:
            self.plain = str(exc)
            self.query_one("#whatif-plan", Static).update(Text(str(exc), style="bold reverse"))
            return
        table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False)
        table.add_column("per epoch", no_wrap=True)
        table.add_column("lesson", no_wrap=True)
        table.add_column("what if", style="bold", no_wrap=True)
        for label, before, after in rows:
            table.add_row(label, before, Text(after, style="reverse" if after != before else ""))
        lines = [f"{label}: {before} → {after}" for label, before, after in rows] + notes
        self.plain = "\n".join(lines)
        self.query_one("#whatif-plan", Static).update(Group(table, Text(""), *(Text(f"· {n}") for n in notes)))

    def action_close(self) -> None:
        self.dismiss(None)
