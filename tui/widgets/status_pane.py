"""The status line: RUNNING / PAUSED / STOPPING / FINISHED / FAILED and every pending change."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from trainmon.engine.messages import Snapshot

STATUS_CLASSES = {"RUNNING": "running", "PAUSED": "paused", "STOPPING": "stopping", "FINISHED": "finished",
                  "FAILED": "failed", "STOPPED": "stopped", "STARTING": "starting"}


class StatusPane(Static):
    """One or two lines: the run state word (coloured by class), job, device, and pending changes."""

    def show(self, s: Snapshot, status: str | None = None) -> None:
        status = status or s.status
        text = Text()
        text.append(f" {status} ", style="reverse bold")
        text.append(f"  {s.job} on {s.device}")
        if s.pending:
            text.append("   pending: ", style="bold")
            text.append("; ".join(p.describe() for p in s.pending))
        for cls in STATUS_CLASSES.values():
            self.set_class(cls == STATUS_CLASSES.get(status, ""), cls)
        self.update(text)
