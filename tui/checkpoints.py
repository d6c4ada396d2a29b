"""What a viewer knows of a run's checkpoints: the newest save, a failure since, and what to announce.

Events reach a viewer twice over: live, and replayed when it attaches late (every save of a long
run). Toasts are for what happens while someone watches; the status line and the chart's resume
markers carry the history. No training logic: it only reads the engine's messages.
"""

from __future__ import annotations

from typing import Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.format import SCREEN, figures, mebibytes

Toast = tuple[str, str]  # (text, severity)


class CheckpointView:
    """`take(event, live)` for each checkpoint event; `newest(snapshot)` for the status line."""

    def __init__(self) -> None:
        self.saved: Optional[msg.CheckpointSaved] = None  # newest save seen as an event
        self.failed: Optional[msg.CheckpointFailed] = None  # newest failure seen as an event

    def newest(self, s: msg.Snapshot) -> Optional[msg.CheckpointSaved]:
        """The newer of the last save seen as an event and the snapshot's (events can run ahead of it)."""
        snap = s.last_checkpoint
        if self.saved is None or (snap is not None and snap.global_iteration >= self.saved.global_iteration):
            return snap
        return self.saved

    def failure(self, s: msg.Snapshot) -> Optional[msg.CheckpointFailed]:
        """The last failure, while no save came after it."""
        saved = self.newest(s)
        if self.failed is None or (saved is not None and saved.global_iteration > self.failed.global_iteration):
            return None
        return self.failed

    def take(self, event: object, live: bool) -> Optional[Toast]:
        """Note a checkpoint event; the toast to show for it, if any.

        Saves at an epoch end toast nowhere (a small job ends several epochs a second); a repeated
        failure toasts once until a save succeeds; replayed saves and failures toast nothing."""
        if isinstance(event, msg.CheckpointSaved):
            self.saved, self.failed = event, None
            if live and event.reason != "epoch end":
                return (f"checkpoint saved ({event.reason}) · {mebibytes(event.size, SCREEN, unit=True)}"
                        f" in {figures(event.seconds, 3, SCREEN)} s\n{event.path}",  # the path whole, on its own line
                        "information")
        elif isinstance(event, msg.CheckpointFailed):
            repeated = self.failed is not None and self.failed.message == event.message
            self.failed = event
            if live and not repeated:
                return f"checkpoint not saved ({event.reason}): {event.message}", "error"
        elif isinstance(event, msg.RunResumed):
            self.saved = self.failed = None  # the resumed run's snapshot names the checkpoint it came from
            if live:  # a replayed resume is history: the chart's marker shows it
                return resume_toast(event)
        return None


def resume_toast(r: msg.RunResumed) -> Toast:
    """`resumed from <path> at epoch 3, iteration 20 (global 110); 7 iterations run again`, plus the
    checkpoints skipped (a warning then) and the settings changed."""
    text = (f"resumed from {r.path} at epoch {r.epoch}, iteration {r.iteration_in_epoch}"
            f" (global {r.global_iteration}); {r.lost_iterations} iteration{'' if r.lost_iterations == 1 else 's'}"
            " run again")
    for line in r.skipped:
        text += f"\nskipped: {line}"
    for line in r.changes:
        text += f"\nchanged: {line}"
    return text, "warning" if r.skipped else "information"


def rejected_toast(event: msg.CommandRejected) -> Toast:
    """`not applied: <reason>`; a save refused because nothing changed since the last one is news, not an
    error (`nothing new to save: already saved at the end of epoch 3`)."""
    if isinstance(event.command, msg.SaveCheckpoint):
        return f"nothing new to save: {event.reason}", "information"
    return f"not applied: {event.reason}", "error"
