"""The status line: RUNNING / PAUSED / STOPPING / FINISHED / FAILED, the last checkpoint, pending changes."""

from __future__ import annotations

from typing import Optional

from rich.markup import escape

from trainmon.engine.core.messages import CheckpointFailed, CheckpointSaved, RunStatus, Snapshot

from .liveness_text import liveness_groups
from .quiet import FlowStatic, flow


def checkpoint_text(s: Snapshot, saved: Optional[CheckpointSaved], failed: Optional[CheckpointFailed]) -> str:
    """`saved ep 3 it 20 · 7 it ago` (or `saved end of ep 3`), `no checkpoint yet`, or a newer failure in
    red; "" when the run keeps no checkpoints and none was seen. "ago" counts global iterations, the work
    a resume from that checkpoint would run again."""
    if failed is not None and (saved is None or failed.global_iteration >= saved.global_iteration):
        return f"[bold red]checkpoint failed[/] at it {failed.global_iteration}"
    if saved is None:
        return "[dim]no checkpoint yet[/]" if s.checkpoints else ""
    where = f"end of ep {saved.epoch}" if saved.epoch_complete else f"ep {saved.epoch} it {saved.iteration_in_epoch}"
    ago = max(0, s.global_iteration - saved.global_iteration)
    return f"[dim]saved[/] {where} [dim]·[/] {ago} it ago"


class StatusPane(FlowStatic):
    """One to four lines: the run state word (coloured by class), job, device, last checkpoint, pending changes.

    Each part is a group that wraps whole (`saved end of ep 34 · 27 it ago` never splits), pending changes
    on lines of their own."""

    def show(self, s: Snapshot, status: str | None = None, run_id: str = "", read_only: bool = False,
             saved: Optional[CheckpointSaved] = None, failed: Optional[CheckpointFailed] = None,
             alerts: str = "") -> None:
        """`alerts`: the alert badge's markup (`tui.alerts.AlertView.badge`), beside the state word."""
        status = RunStatus(status or s.status)
        # before the engine's first snapshot the job's name is not known yet: say what is happening
        job = f"{escape(s.job)} on {escape(s.device)}" if s.job else "starting the engine…"
        groups = [f"[reverse bold] {status.label} [/]", job]
        if alerts:
            groups.insert(1, alerts)
        if run_id:
            groups.append(f"[dim]run[/] {escape(run_id)}")
        checkpoint = "" if read_only else checkpoint_text(s, saved, failed)  # read-only: that word matters more
        groups.append(checkpoint)
        groups.extend(liveness_groups(s.liveness, status == RunStatus.RUNNING))  # phase, last iteration's age
        if read_only:
            groups.append("[bold](read-only: this run has ended)[/]" if status.final else "[bold](read-only: watching)[/]")
        off = [word for word, reason in (("b", s.batch_size_off), ("k", s.accum_off)) if reason]
        if off and not read_only and not status.final:  # a tracked loop's own: the keys are dimmed, `?` says why
            groups.append(f"[dim]{'/'.join(off)} set by the loop[/]")
        lines: list = [groups]
        if s.pending:
            lines.append(["[bold]pending:[/] " + escape(s.pending[0].describe())]
                         + [escape(p.describe()) for p in s.pending[1:]])
        if status != getattr(self, "_status", None):
            self._status = status
            for state in RunStatus:
                self.set_class(state == status, state.value)
        self.show_lines(lines)

    def _flow(self) -> None:
        width = self.content_size.width
        first, *rest = self._lines
        self._flowed = "\n".join([flow(first, width, "  ")] + [flow(line, width, "; ", "  ") for line in rest])
        self.show_text(self._flowed)
