"""`b`: type an exact batch size; bad input gets a clear message and changes nothing."""

from __future__ import annotations

from typing import Optional

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from trainmon.engine.core.arithmetic import MAX_BATCH_SIZE


def parse_batch_size(text: str, dataset_size: Optional[int], drop_last: bool) -> tuple[Optional[int], str]:
    """`(value, "")` for a valid batch size, or `(None, one-line reason)`.

    Only plain digits count: `1e3`, `3.5` or `0x10` are refused, not silently read as 13, 35 or 10.
    """
    text = text.strip()
    if not text:
        return None, "type a whole number ≥ 1"
    if not text.isdigit():
        return None, f"{text!r} is not a whole number"
    value = int(text)
    if value < 1:
        return None, f"batch size must be ≥ 1, got {value}"
    if value > MAX_BATCH_SIZE:
        return None, f"batch size must be at most {MAX_BATCH_SIZE}"
    if drop_last and dataset_size is not None and value > dataset_size:
        return None, f"{value} is more than the {dataset_size} samples, and drop_last would drop them all"
    return value, ""


class BatchSizeDialog(ModalScreen[Optional[int]]):
    """Returns the new batch size, or `None` when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: int, dataset_size: Optional[int], drop_last: bool, next_epoch: int,
                 pending: Optional[int] = None) -> None:
        super().__init__()
        self.current, self.dataset_size, self.drop_last, self.next_epoch = current, dataset_size, drop_last, next_epoch
        self.pending = pending

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self._prompt(), id="dialog-prompt")
            yield Input(placeholder="a whole number, e.g. 64", id="batch-size-input")
            yield Label("enter: apply · esc: cancel", id="dialog-error")

    def _prompt(self) -> str:
        pending = f", {self.pending} pending" if self.pending is not None else ""
        return f"Batch size now {self.current}{pending}.\nNew size, from the start of epoch {self.next_epoch}:"

    def follow(self, next_epoch: int) -> None:
        """The run went on while the dialog was open: the epoch a new size would start from, kept current."""
        if next_epoch != self.next_epoch:
            self.next_epoch = next_epoch
            self.query_one("#dialog-prompt", Label).update(self._prompt())

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "Batch size"

    @on(Input.Submitted)
    def submit(self, event: Input.Submitted) -> None:
        value, reason = parse_batch_size(event.value, self.dataset_size, self.drop_last)
        if value is None:
            error = self.query_one("#dialog-error", Label)
            error.update(f"[b red]{reason}[/] — nothing changed")
            error.add_class("error")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
