"""The status line: RUNNING / PAUSED / STOPPING / FINISHED / FAILED and every pending change."""

from __future__ import annotations

from rich.markup import escape

from trainmon.engine.messages import Snapshot

from .quiet import QuietStatic

STATUS_CLASSES = {"RUNNING": "running", "PAUSED": "paused", "STOPPING": "stopping", "FINISHED": "finished",
                  "FAILED": "failed", "STOPPED": "stopped", "STARTING": "starting"}


class StatusPane(QuietStatic):
    """One or two lines: the run state word (coloured by class), job, device, and pending changes."""

    def show(self, s: Snapshot, status: str | None = None) -> None:
        status = status or s.status
        text = f"[reverse bold] {status} [/]  {escape(s.job)} on {escape(s.device)}"
        if s.pending:
            text += "   [bold]pending:[/] " + escape("; ".join(p.describe() for p in s.pending))
        if status != getattr(self, "_status", None):
            self._status = status
            for cls in STATUS_CLASSES.values():
                self.set_class(cls == STATUS_CLASSES.get(status, ""), cls)
        self.show_text(text)
