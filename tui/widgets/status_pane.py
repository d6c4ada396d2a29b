"""The status line: RUNNING / PAUSED / STOPPING / FINISHED / FAILED and every pending change."""

from __future__ import annotations

from rich.markup import escape

from trainmon.engine.messages import RunStatus, Snapshot

from .quiet import QuietStatic


class StatusPane(QuietStatic):
    """One or two lines: the run state word (coloured by class), job, device, and pending changes."""

    def show(self, s: Snapshot, status: str | None = None, run_id: str = "", read_only: bool = False) -> None:
        status = RunStatus(status or s.status)
        text = f"[reverse bold] {status.label} [/]  {escape(s.job)} on {escape(s.device)}"
        if run_id:
            text += f"  [dim]run[/] {escape(run_id)}"
        if read_only:
            text += "  [bold](read-only: this run has ended)[/]"
        if s.pending:
            text += "\n[bold]pending:[/] " + escape("; ".join(p.describe() for p in s.pending))
        if status != getattr(self, "_status", None):
            self._status = status
            for state in RunStatus:
                self.set_class(state == status, state.value)
        self.show_text(text)
