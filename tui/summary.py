"""What a viewer shows when a run has ended: the figures a person looks for first, and what to do next.

It reads the run's messages only (the `Finished` event, each epoch's validation, the newest checkpoint):
no training logic, no textual.
"""

from __future__ import annotations

from typing import Optional

from rich.markup import escape

from trainmon.engine.core import messages as msg
from trainmon.engine.core.format import SCREEN, count, duration, metric


class RunSummary:
    """`take(event)` for every event of the run (live or replayed); `lines(...)` once it has ended."""

    def __init__(self) -> None:
        self.val_losses: dict[int, float] = {}  # epoch (1-based) -> validation loss
        self.alerts, self.newest_alert = 0, None  # how many the run raised, the newest

    def take(self, event: object) -> None:
        if isinstance(event, msg.EpochEnded) and event.val_loss is not None:
            self.val_losses[event.epoch] = event.val_loss
        if isinstance(event, msg.Alert):
            self.alerts, self.newest_alert = self.alerts + 1, event

    def best(self) -> Optional[tuple[int, float]]:
        """(epoch, loss) of the lowest finite validation loss, the earliest epoch on a tie."""
        finite = [(loss, epoch) for epoch, loss in self.val_losses.items() if loss == loss and abs(loss) != float("inf")]
        if not finite:
            return None
        loss, epoch = min(finite)
        return epoch, loss

    def lines(self, finished: msg.Finished, s: msg.Snapshot, checkpoint: Optional[msg.CheckpointSaved],
              run_id: str = "", read_only: bool = False) -> list[tuple[str, str]]:
        """`(label, text)` rows in Rich markup: what ran, time taken, validation (final and best, with
        their epochs), the last checkpoint and the `trainmon resume` command where it applies."""
        word = "stopped" if finished.stopped else "finished"
        epochs = f"{finished.epochs_completed} of {s.epochs} epochs" if s.epochs else f"{finished.epochs_completed} epochs"
        rows = [(word, f"{escape(s.job)} · {epochs} · {count(finished.global_iteration)} iterations · "
                       f"{count(finished.global_step)} optimizer steps · {count(finished.samples_seen)} samples")]
        taken = duration(finished.elapsed)
        active = duration(s.active_seconds) if s.active_seconds and s.active_seconds < finished.elapsed - 1 else ""
        rows.append(("time taken", taken + (f" (training {active}, the rest paused or validating)" if active else "")))
        last_epoch = max(self.val_losses) if self.val_losses else None
        if finished.val_loss is not None or last_epoch is not None:
            final = finished.val_loss if finished.val_loss is not None else self.val_losses[last_epoch]
            text = f"final {metric(final, SCREEN)}" + (f" (epoch {last_epoch})" if last_epoch else "")
            best = self.best()
            if best is not None:
                text += f" · best {metric(best[1], SCREEN)} at epoch {best[0]}"
            rows.append(("val loss", text))
        if finished.train_loss is not None:
            rows.append(("train loss", f"last epoch {metric(finished.train_loss, SCREEN)}"))
        if self.newest_alert is not None:
            newest = self.newest_alert
            rows.append(("alerts", f"{self.alerts} · newest [bold]{escape(newest.kind)}[/] at global iteration "
                                   f"{newest.global_iteration} · a lists them"))
        if checkpoint is not None:
            where = (f"end of epoch {checkpoint.epoch}" if checkpoint.epoch_complete
                     else f"epoch {checkpoint.epoch}, iteration {checkpoint.iteration_in_epoch}")
            rows.append(("checkpoint", f"{where}:\n{escape(checkpoint.path)}"))  # the path whole, on its own row
            if run_id:
                command = f"trainmon resume {run_id}"
                if finished.stopped:
                    rows.append(("go on", f"[bold]{escape(command)}[/] (from that checkpoint)"))
                else:
                    more = s.epochs or finished.epochs_completed
                    rows.append(("train on", f"[bold]{escape(command)} --epochs N[/]\nwith N over {more}"))
        elif s.checkpoints or finished.stopped:
            rows.append(("checkpoint", "none saved: this run cannot be resumed"))
        return rows
