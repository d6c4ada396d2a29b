"""The gradient-accumulation window as slots, its samples, the effective batch size, the next step."""

from __future__ import annotations

from typing import Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.format import SCREEN, count_of, metric
from trainmon.engine.core.messages import Snapshot

from .quiet import FlowStatic

FILLED, EMPTY = "■", "□"
MAX_SLOTS = 32


def window_slots(position: int, size: int) -> str:
    """`■■□□ 2/4` for 2 of 4 micro-batches accumulated; long windows are shown as a count only."""
    if size > MAX_SLOTS:
        return count_of(position, size)
    return FILLED * position + EMPTY * (size - position) + f" {count_of(position, size)}"


def plural(n: int, word: str) -> str:
    """`1 optimizer step`, `468 optimizer steps`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def effective_text(b: int, k: int, world_size: int = 1) -> str:
    """The effective batch size `b · k · world_size` with its factors: `32`, `32 × 4 = 128`,
    `32 × 4 × 2 ranks = 256` (rank factor only in a distributed run)."""
    factors = [str(b)] + ([str(k)] if k != 1 else []) + ([f"{world_size} ranks"] if world_size > 1 else [])
    return factors[0] if len(factors) == 1 else " × ".join(factors) + f" = {b * k * world_size}"


def whole_set(s: Snapshot) -> Optional[int]:
    """The real effective batch size when one window holds a whole epoch, fewer samples than `b · k`
    (b = 2000 on 1437 samples: every step sees the 1437); `None` otherwise."""
    m, n = s.dataset_size, s.iterations_in_epoch
    if m is None or n is None or s.world_size > 1 or s.drop_last or not s.batch_size:
        return None
    return m if n <= s.accum and s.batch_size * s.accum > m else None


def effective_groups(s: Snapshot) -> list[str]:
    """`effective batch size 32 × 4 = 128`; when a window holds the whole training set, its real size:
    `effective batch size 1437` · `the whole set (b × k = 2000 × 2 = 4000)`."""
    whole = whole_set(s)
    if whole is not None:
        return [f"effective batch size {whole}", f"the whole set (b × k = {effective_text(s.batch_size, s.accum)})"
                if s.accum > 1 else f"the whole set (b = {s.batch_size})"]
    return [effective_line(s)]


def effective_line(s: Snapshot, lead: str = "effective batch size ") -> str:
    """`effective batch size 32 × 4 = 128`; a distributed run's factors on a line of their own (it would not
    fit the left column)."""
    if s.world_size > 1:
        return f"{lead.rstrip()}\n  {effective_text(s.batch_size, s.accum, s.world_size)}"
    return f"{lead}{effective_text(s.batch_size, s.accum)}"


def final_text(s: Snapshot, status: msg.RunStatus) -> str:
    """What the accumulation did, once the run can train no more: steps taken and the last window's fate.

    A finished run stepped its last window (short or not, DESIGN.md). A run stopped or failed inside a
    window never stepped the micro-batches accumulated there; they are named, not hidden.
    """
    k = s.accum
    lines = [f"run {status.value} · {plural(s.global_step, 'optimizer step')}"]
    if s.window_position > 0 and status != msg.FINISHED:
        lines.append(f"window {window_slots(s.window_position, s.window_size)} · {s.window_samples} samples,"
                     " not stepped")
    elif s.global_iteration and k == 1:
        lines.append("each iteration was an optimizer step")
    elif s.global_iteration:
        lines.append("last window stepped")
    else:
        lines.append("no iteration ran")
    lines.append(effective_line(s, f"k = {k} · effective batch size ") if whole_set(s) is None
                 else f"k = {k} · " + " · ".join(effective_groups(s)))
    pending = next((p for p in s.pending if p.what == "accumulation steps"), None)
    if pending:
        lines.append(f"k {k} → {pending.new} was pending, never applied")
    return "\n".join(lines)


class AccumPane(FlowStatic):
    """What the current accumulation window holds and when the optimizer steps."""

    def on_mount(self) -> None:
        self.border_title = "Gradient accumulation"  # once: setting a border title repaints the whole pane

    def show(self, s: Snapshot, status: Optional[msg.RunStatus] = None) -> None:
        """Draw snapshot `s`. `status` is the run's status as the viewer knows it (a viewer may learn of an
        ending, a killed engine say, before any snapshot says so); `s.status` when not given."""
        status = msg.RunStatus(status if status is not None else s.status)
        k = s.accum
        if status.final:
            self.show_text(final_text(s, status) if s.batch_size else f"run {status.value} before the first epoch")
            return
        if not s.batch_size:  # nothing from the engine yet
            self.show_text("waiting for the first epoch…")
            return
        pending = next((p for p in s.pending if p.what == "accumulation steps"), None)
        extra: list = []
        if pending:
            extra.append([f"k {k} → {pending.new} at the next window"])
        rates = list(dict.fromkeys(s.learning_rates))  # each distinct rate once, in group order
        if rates:
            extra.append(["lr " + " · ".join(f"{r:.3g}" for r in rates)
                          + (f" ({len(s.learning_rates)} groups)" if len(rates) > 1 else "")])
        if s.precision != "fp32":  # a skipped step still closed its window: it is in the step count
            extra.append([f"{s.precision}: steps applied {s.global_step - s.steps_skipped}",
                          f"skipped {s.steps_skipped}"])
        if s.clip_grad_norm is not None:  # what the step's gradient was before clipping, and how often it was
            norm = "--" if s.grad_norm is None else metric(s.grad_norm, SCREEN)
            extra.append([f"grad norm {norm} (max {s.clip_grad_norm:g})", f"clipped {s.clipped_steps}/{s.global_step}"])
        if k == 1 and s.window_size <= 1 and whole_set(s) is None:
            effective = effective_line(s) if s.world_size > 1 else f"effective batch size = {s.batch_size}"
            self.show_lines(["k = 1: each iteration is an optimizer step", effective,
                             f"optimizer steps {s.global_step}", *extra])
            return
        size = s.window_size
        n = s.iterations_in_epoch
        if n is not None and s.iteration_in_epoch >= n and s.window_position == 0:
            size = min(k, n)  # the epoch's last window stepped: the next is the next epoch's first
        left = max(0, size - s.window_position)
        short = " (short)" if size < k else ""
        self.show_lines([
            [f"window {window_slots(s.window_position, size)}", f"{s.window_samples} samples{short}"],
            effective_groups(s),
            [f"optimizer steps {s.global_step}", f"next in {plural(left, 'iteration')}"],
            *extra,
        ])
