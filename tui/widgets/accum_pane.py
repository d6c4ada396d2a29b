"""The gradient-accumulation window as slots, its samples, the effective batch size, the next step."""

from __future__ import annotations

from trainmon.engine.messages import Snapshot
from trainmon.engine.numbers import count_of

from .quiet import QuietStatic

FILLED, EMPTY = "■", "□"
MAX_SLOTS = 32


def window_slots(position: int, size: int) -> str:
    """`■■□□ 2/4` for 2 of 4 micro-batches accumulated; long windows are shown as a count only."""
    if size > MAX_SLOTS:
        return count_of(position, size)
    return FILLED * position + EMPTY * (size - position) + f" {count_of(position, size)}"


class AccumPane(QuietStatic):
    """What the current accumulation window holds and when the optimizer steps."""

    def show(self, s: Snapshot) -> None:
        self.border_title = "Gradient accumulation"
        k = s.accum
        if not s.batch_size:  # nothing from the engine yet
            self.show_text("waiting for the first epoch…")
            return
        pending = next((p for p in s.pending if p.what == "accumulation steps"), None)
        change = f"\nk {k} → {pending.new} at the next window" if pending else ""
        if k == 1 and s.window_size <= 1:
            self.show_text(
                f"k = 1: each iteration is an optimizer step\n"
                f"effective batch size = {s.batch_size}\n"
                f"optimizer steps {s.global_step}{change}"
            )
            return
        left = max(0, s.window_size - s.window_position)
        short = " (short)" if s.window_size < k else ""
        self.show_text(
            f"window {window_slots(s.window_position, s.window_size)} · {s.window_samples} samples{short}\n"
            f"effective batch size {s.batch_size} × {k} = {s.batch_size * k}\n"
            f"optimizer steps {s.global_step} · next in {left} iteration{'s' if left != 1 else ''}{change}"
        )
