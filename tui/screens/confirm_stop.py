"""Stopping a run ends the session's training: one key asks, a second (q or y) confirms, as k9s asks
before a destructive action. `d` still detaches from here: the run goes on."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static


class ConfirmStop(ModalScreen[str]):
    """Dismissed with "stop" (q, y), "detach" (d) or "" (n, Esc: the run goes on, nothing sent)."""

    BINDINGS = [
        Binding("y,q", "choose('stop')", "Stop the run", key_display="y/q"),
        Binding("n,escape", "choose('')", "Keep running", key_display="n/esc"),
        Binding("d", "choose('detach')", "Detach"),
    ]

    def __init__(self, run_id: str = "", others: int = 0) -> None:
        super().__init__()
        self.run_id, self.others = run_id, others

    def compose(self) -> ComposeResult:
        what = f"run {self.run_id}" if self.run_id else "the run"
        lines = [f"[bold]Stop {what}?[/] It ends after the current iteration (a checkpoint is saved where "
                 "the run keeps them)."]
        if self.others:
            lines.append(f"{self.others} other viewer{'s are' if self.others > 1 else ' is'} attached: "
                         "it stops for everyone.")
        lines.append("[bold]y[/] or [bold]q[/]: stop · [bold]n[/] or [bold]esc[/]: keep it running · "
                     "[bold]d[/]: detach (the run goes on)")
        with Vertical(id="confirm"):
            yield Static("\n".join(lines), id="confirm-text")
        yield Footer(compact=True)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
