"""Epoch and iteration bars, run counters, speed, elapsed time and ETA."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar

from trainmon.engine.messages import FINAL_STATES, STARTING, Snapshot
from trainmon.engine.numbers import SCREEN, count, count_of, duration, rate

from .quiet import QuietStatic


class ProgressPane(Vertical):
    """Epoch e of E and iteration i of n as bars (indeterminate when n is unknown), then counters."""

    def compose(self) -> ComposeResult:
        with Horizontal(classes="bar-row"):
            yield QuietStatic("epoch", id="epoch-label", classes="bar-label")
            yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="epoch-bar")
        with Horizontal(classes="bar-row"):
            yield QuietStatic("iteration", id="iteration-label", classes="bar-label")
            yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="iteration-bar")
        yield QuietStatic(id="batch-label")
        yield QuietStatic(id="counters")

    def show(self, s: Snapshot) -> None:
        self.border_title = "Progress"
        final = s.status in FINAL_STATES
        epoch_bar = self.query_one("#epoch-bar", ProgressBar)
        if s.epochs:
            epoch_progress = max(0, s.epoch - 1) + (
                s.iteration_in_epoch / s.iterations_in_epoch if s.iterations_in_epoch else 0)
            epoch_total: float | None = s.epochs
        else:  # a run of 0 epochs: nothing to do, and a bar that says so
            epoch_progress, epoch_total = (1, 1) if final else (0, None)
        if (epoch_bar.total, epoch_bar.progress) != (epoch_total, epoch_progress):
            epoch_bar.update(total=epoch_total, progress=epoch_progress)
        starting = s.status == STARTING
        self.query_one("#epoch-label", QuietStatic).show_text(
            "starting…" if starting else f"epoch     {count_of(s.epoch, s.epochs)}")
        n = s.iterations_in_epoch
        it_bar = self.query_one("#iteration-bar", ProgressBar)
        # unknown length: indeterminate while running; once the run is over the bar stops moving
        it_total = n if n else (1 if final else None)
        it_progress = s.iteration_in_epoch if n else (1 if final else 0)
        if (it_bar.total, it_bar.progress) != (it_total, it_progress):
            it_bar.update(total=it_total, progress=it_progress)
        last = "" if s.last_batch_size is None or s.last_batch_size == s.batch_size else (
            f", last {s.last_batch_size}")
        self.query_one("#iteration-label", QuietStatic).show_text(
            "" if starting else f"iteration {count_of(s.iteration_in_epoch, n)}")
        self.query_one("#batch-label", QuietStatic).show_text(
            "loading the job in the engine process" if starting else
            f"batch size {s.batch_size}{last} · m = {count(s.dataset_size)}")
        self.query_one("#counters", QuietStatic).show_text(
            f"global iteration {count_of(s.global_iteration, s.total_iterations)}\n"
            f"optimizer step   {count_of(s.global_step, s.total_steps)}\n"
            f"samples seen     {count_of(s.samples_seen, s.total_samples)}\n"
            f"{rate(s.iterations_per_second, SCREEN, 'it/s')} · {rate(s.samples_per_second, SCREEN, 'samples/s')}\n"
            f"elapsed {duration(s.elapsed)} · ETA {duration(s.eta_seconds)}"
        )
