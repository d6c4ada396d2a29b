"""Epoch and iteration bars, run counters, speed, elapsed time and ETA.

Every line is its own widget and repaints only when its own text changes: over SSH a repaint
costs bytes, and a paused run should send little more than the elapsed time once a second.
"""

from __future__ import annotations

from typing import Optional

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar

from trainmon.engine.core.format import SCREEN, count, count_of, duration, figures, planned_epochs, rate
from trainmon.engine.core.messages import FINAL_STATES, PAUSED, RUNNING, STARTING, Snapshot

from ..compat import Bar, progress_bar_bar
from .quiet import FlowStatic, QuietStatic
from .throughput_text import throughput_groups

ANIMATION_HZ = 4  # frames per second of an indeterminate bar while the run moves (textual's own: 15)
COUNTER_LINES = ("global-iteration", "optimizer-step", "samples-seen", "speed", "elapsed")


class PacedBar(Bar):
    """A bar whose indeterminate animation runs only while `moving` (at `ANIMATION_HZ`), else stands still."""

    moving = True

    def watch_percentage(self, percentage: Optional[float]) -> None:
        self.pace()

    def pace(self) -> None:
        wanted = 1 / ANIMATION_HZ if self.percentage is None and self.moving else None
        if self.auto_refresh != wanted:
            self.auto_refresh = wanted


class RunBar(ProgressBar):
    """A bar only (no percentage, no ETA) that repaints only when its value changes.

    textual's ProgressBar recomputes its ETA once a second and repaints the row even when the ETA
    is not shown; here that tick does nothing."""

    def __init__(self, **kwargs) -> None:
        super().__init__(total=None, show_eta=False, show_percentage=False, **kwargs)

    def compose(self) -> ComposeResult:
        yield progress_bar_bar(self, PacedBar)  # textual's own bar, paced (see compat)

    def update(self, **changes) -> None:
        if changes:  # the once-a-second tick (no arguments) would only refresh the hidden ETA
            super().update(**changes)

    def show(self, total: Optional[float], progress: float, moving: bool) -> None:
        """Set the bar (`total` None: indeterminate, animated only while `moving`)."""
        if (self.total, self.progress) != (total, progress):
            super().update(total=total, progress=progress)
        bar = self.query_one(PacedBar)
        if bar.moving != moving:
            bar.moving = moving
            bar.pace()


class ProgressPane(Vertical):
    """Epoch e of E and iteration i of n as bars (indeterminate when n is unknown), then counters."""

    def compose(self) -> ComposeResult:
        with Horizontal(classes="bar-row"):
            yield QuietStatic("epoch", id="epoch-label", classes="bar-label")
            yield RunBar(id="epoch-bar")
        with Horizontal(classes="bar-row"):
            yield QuietStatic("iteration", id="iteration-label", classes="bar-label")
            yield RunBar(id="iteration-bar")
        yield FlowStatic(id="batch-label")
        with Vertical(id="counters"):
            for name in COUNTER_LINES:
                yield FlowStatic(id=name, classes="counter")

    def on_mount(self) -> None:
        self.border_title = "Progress"  # once: setting a border title repaints the whole pane

    def show(self, s: Snapshot) -> None:
        final = s.status in FINAL_STATES
        moving = s.status == RUNNING
        if s.epochs and s.epochs >= s.epoch:
            epoch_progress = max(0, s.epoch - 1) + (
                s.iteration_in_epoch / s.iterations_in_epoch if s.iterations_in_epoch else 0)
            epoch_total: float | None = s.epochs
        else:  # a run of 0 epochs: nothing to do, and a bar that says so
            epoch_progress, epoch_total = (1, 1) if final else (0, None)
        self.query_one("#epoch-bar", RunBar).show(epoch_total, epoch_progress, moving)
        starting = s.status == STARTING
        self.query_one("#epoch-label", QuietStatic).show_text(
            "starting…" if starting else f"epoch     {count_of(s.epoch, planned_epochs(s.epoch, s.epochs))}")
        n = s.iterations_in_epoch
        # unknown length: indeterminate while running; once the run is over the bar stops moving
        it_total = n if n else (1 if final else None)
        it_progress = s.iteration_in_epoch if n else (1 if final else 0)
        self.query_one("#iteration-bar", RunBar).show(it_total, it_progress, moving)
        self.query_one("#iteration-label", QuietStatic).show_text(
            "" if starting else f"iteration {count_of(s.iteration_in_epoch, n)}")
        self.query_one("#batch-label", FlowStatic).show_lines(
            [("waiting for the script's first batch" if s.tracked else "loading the job in the engine process")]
            if starting else [batch_groups(s)])
        lines = (
            f"global iteration {padded_of(s.global_iteration, s.total_iterations)}",
            f"optimizer step   {padded_of(s.global_step, s.total_steps)}",
            f"samples seen     {padded_of(s.samples_seen, s.total_samples)}",
            speed_groups(s),
            time_groups(s),
        )
        for name, line in zip(COUNTER_LINES, lines):
            self.query_one(f"#{name}", FlowStatic).show_lines([line])


def padded_of(done: int, total: Optional[int]) -> str:
    """`  67/225`: `done` right-aligned to the total's width, so the line keeps its width as it counts."""
    text = count(total)
    return f"{done:>{len(text)}}/{text}"


def batch_groups(s: Snapshot) -> list[str]:
    """`batch size 32, last 29` · `1437 samples`; a batch size above the training set's size says that
    each batch holds the whole set, and how many samples that is (the loader never yields more)."""
    m, b = s.dataset_size, s.batch_size
    if m is not None and 0 < m < b and not s.drop_last:
        return [f"batch size {b} > {m} samples", "one batch holds the whole set"]
    last = "" if s.last_batch_size is None or s.last_batch_size == b else f", last {s.last_batch_size}"
    return [f"batch size {b}{last}", f"{count(m)} samples" if m is not None else "samples: unknown length"]


def speed_groups(s: Snapshot) -> list[str]:
    """`742.5 it/s` · `23,760.0 samples/s` — one rate for speed and ETA; "estimating…" until it settles."""
    if s.iterations_per_second is None and s.status == RUNNING:
        return ["speed estimating…"]
    return [rate(s.iterations_per_second, SCREEN, "it/s"), rate(s.samples_per_second, SCREEN, "samples/s"),
            *throughput_groups(s.throughput)]  # tokens/s, MFU where the job gives them


def time_groups(s: Snapshot) -> list[str]:
    """`elapsed 0:12` · `ETA 0:21` · `last epoch 6.2 s`, then the time left out of the ETA, shown apart:
    paused, validation and checkpoint saves. The ETA is the training left in the whole run at the rate
    shown (validation and saves to come are not in it); unknown lengths have none. The last full epoch's
    time is that epoch's alone (it moves from epoch to epoch; the ETA's rate is the run's mean)."""
    groups = [f"elapsed {duration(s.elapsed)}"]
    if s.status not in FINAL_STATES and s.status != STARTING and s.total_iterations is not None:
        groups.append("ETA estimating…" if s.eta_seconds is None else f"ETA {duration(s.eta_seconds)}")
    if s.epoch_seconds is not None:  # a short epoch in seconds: `0:00 per epoch` would be a wrong number
        each = duration(s.epoch_seconds) if s.epoch_seconds >= 60 else f"{figures(s.epoch_seconds, 2, SCREEN)} s"
        groups.append(f"last epoch {each}")
    paused = s.elapsed - s.active_seconds
    for label, seconds in (("paused", paused), ("validation", s.validation_seconds),
                           ("saving", s.checkpoint_seconds)):
        if seconds >= 1 or (label == "paused" and s.status == PAUSED):  # a pause shows from its start: the
            groups.append(f"{label} {duration(seconds)}")  # line does not grow (a layout) a second into it
    return groups
