"""Epoch and iteration bars, run counters, speed, elapsed time and ETA."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar

from trainmon.engine.arithmetic import format_duration
from trainmon.engine.messages import Snapshot

from .format import of, rate
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
        epoch_bar = self.query_one("#epoch-bar", ProgressBar)
        epoch_progress = max(0, s.epoch - 1) + (
            s.iteration_in_epoch / s.iterations_in_epoch if s.iterations_in_epoch else 0)
        if (epoch_bar.total, epoch_bar.progress) != (s.epochs or None, epoch_progress):
            epoch_bar.update(total=s.epochs or None, progress=epoch_progress)
        self.query_one("#epoch-label", QuietStatic).show_text(f"epoch     {of(s.epoch, s.epochs)}")
        n = s.iterations_in_epoch
        it_bar = self.query_one("#iteration-bar", ProgressBar)
        if (it_bar.total, it_bar.progress) != (n if n else None, s.iteration_in_epoch):
            it_bar.update(total=n if n else None, progress=s.iteration_in_epoch)
        last = "" if s.last_batch_size is None or s.last_batch_size == s.batch_size else (
            f", last {s.last_batch_size}")
        self.query_one("#iteration-label", QuietStatic).show_text(f"iteration {of(s.iteration_in_epoch, n)}")
        self.query_one("#batch-label", QuietStatic).show_text(f"batch size {s.batch_size}{last} · m = {s.dataset_size or '?'}")
        eta = "--" if s.eta_seconds is None else format_duration(s.eta_seconds)
        self.query_one("#counters", QuietStatic).show_text(
            f"global iteration {of(s.global_iteration, s.total_iterations)}\n"
            f"optimizer step   {of(s.global_step, s.total_steps)}\n"
            f"samples seen     {of(s.samples_seen, s.total_samples)}\n"
            f"{rate(s.iterations_per_second, 'it/s')} · {rate(s.samples_per_second, 'samples/s')}\n"
            f"elapsed {format_duration(s.elapsed)} · ETA {eta}"
        )
