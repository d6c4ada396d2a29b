"""The lesson screen's parts: the strip of terms that light up, the focus panel, the run's live line."""

from __future__ import annotations

from typing import Optional

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from trainmon.engine.core.format import SCREEN, count_of, metric
from trainmon.engine.core.lesson import Stop
from trainmon.engine.core.messages import EpochEnded, Snapshot

TERMS = ("sample", "micro-batch", "batch size", "iteration", "accumulation window", "optimizer step",
         "effective batch size", "epoch", "samples seen", "validation", "global iteration / step")


class TermStrip(Static):
    """Every term of the lesson in one strip; those of the stop just reached light up (reverse video, so
    they stand out under NO_COLOR too)."""

    def show(self, lit: tuple[str, ...]) -> None:
        text = Text()
        for term in TERMS:
            if text:
                text.append("  ")
            text.append(f" {term} ", style="bold reverse" if term in lit else "dim")
        self.update(text)


class StopPanel(Static):
    """The focus area: the question to predict, or the stop with its text, numbers, answer and note.
    `plain` holds what it shows as plain text (one line per part), for tests and the handout's words."""

    plain = ""

    def show(self, stop: Stop, asking: bool, reached: bool, replaying: bool, before: Optional[Stop] = None,
             running: bool = False, figures: tuple[tuple[str, str], ...] = ()) -> None:
        """`stop` revealed, or its question while `asking` (with where the run stands: the numbers of the stop
        `before` without their totals, or for the first question the settings alone: m, b and k, never the
        answer). `running`: the run is stepping to the next stop (or to this question's answer), keys wait.
        `figures`: the run's own `(label, value)` rows shown after the stop's numbers (its validation figures)."""
        wait = Text("running… the next stop shows when the run gets there (keys wait for it)", style="bold reverse")
        if asking:
            self._title("Predict")
            given = ((label, _without_total(value)) for label, value in (before or stop).numbers
                     if before is not None or label in ("samples m", "batch size b", "accumulation steps k"))
            numbers = tuple(given)
            how = ("n: run on and reveal the answer." if not reached else "n: reveal the answer.")
            parts: list = [Text(stop.question.prompt, style="bold"), Text("")]
            parts.append(wait if running else Text(f"Think, or ask the class. {how}", style="italic"))
            if numbers:
                parts += [Text(""), Text("Where the run stands" if before else "Given", style="underline"),
                          _numbers(numbers)]
            self._show(parts, numbers)
            return
        self._title(stop.title)
        parts = []
        if running:
            parts += [wait, Text("")]
        elif not reached:
            parts += [Text("running…", style="bold reverse"), Text("")]
        elif replaying:
            parts += [Text("looking back: training does not rewind; the run stays where it is", style="italic"),
                      Text("")]
        parts.append(Text(stop.text))
        if stop.numbers or figures:
            parts += [Text(""), _numbers(stop.numbers + figures)]
        if stop.question is not None:
            parts += [Text(""), Text.assemble(("Answer: ", "bold"), stop.question.answer)]
        if stop.note:
            parts += [Text(""), Text.assemble(("Teacher: ", "bold"), stop.note)]
        self._show(parts, stop.numbers + figures)

    def _title(self, title: str) -> None:
        """The focus area's title: on this panel (for tests) and on the scrolling frame around it (on screen)."""
        self.border_title = title
        if self.parent is not None:
            self.parent.border_title = title

    def _show(self, parts: list, numbers: tuple[tuple[str, str], ...] = ()) -> None:
        lines = [p.plain for p in parts if isinstance(p, Text)] + [f"{label}  {value}" for label, value in numbers]
        self.plain = "\n".join(lines)
        self.update(Group(*parts))


def validation_figures(ended: Optional[EpochEnded]) -> tuple[tuple[str, str], ...]:
    """What the run's validation gave at an epoch's end (`ended`, its `EpochEnded`): the loss and each metric,
    or `no validation set` when it evaluated nothing."""
    if ended is None or ended.val_loss is None and not ended.val_metrics:
        return (("validation", "no validation set"),)
    rows = [("validation loss", metric(ended.val_loss, SCREEN))]
    return tuple(rows + [(f"validation {name}", metric(value, SCREEN)) for name, value in ended.val_metrics.items()])


def _without_total(value: str) -> str:
    """`12 of 16` as `12`: a total could be the answer asked for; `3 of 4 micro-batches` stays."""
    done, _, total = value.partition(" of ")
    return done if total.isdigit() else value


def _numbers(numbers: tuple[tuple[str, str], ...]) -> Table:
    """`label  value` rows, the values bold."""
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
    table.add_column("what", no_wrap=True)
    table.add_column("value", style="bold", no_wrap=True)
    for label, value in numbers:
        table.add_row(label, value)
    return table


class LiveLine(Static):
    """The run's own counters, as the engine reports them: the lesson's numbers, checked live."""

    def show(self, s: Optional[Snapshot], ended: bool, pace: Optional[float], running: bool = False,
             hidden: bool = False) -> None:
        """The run's counters and state; `running` while the run steps to the next stop (its snapshots may
        still say paused), `hidden` while a question waits (the counters would give the answer away)."""
        if s is None:
            self.update("the run is starting…")
            return
        window = f"window {s.window_position}/{s.window_size}" if s.accum > 1 else "window 1/1"
        parts = [f"epoch {count_of(s.epoch, s.epochs)}", f"iteration {count_of(s.iteration_in_epoch, s.iterations_in_epoch)}",
                 window, f"optimizer step {count_of(s.global_step, s.total_steps)}", f"samples seen {s.samples_seen}",
                 f"loss {metric(s.loss, SCREEN)}"]
        if hidden:
            parts = ["the run's counters are hidden until the answer"]
        state = "run ended" if ended else "running…" if running else s.status
        if pace is not None:
            state += f" · playing, {pace:g} s a stop"
        self.update(Text("  ".join(parts) + f"   [{state}]"))
