"""Headless mode: the run as plain key=value lines, no carriage returns or escape codes.

One line per epoch, a progress line at most every `progress_every` seconds inside long epochs, one
line per non-finite loss (the first few), and a final summary line.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, TextIO

from trainmon.engine import messages as msg
from trainmon.engine.arithmetic import format_duration


def fmt(value: Optional[float], digits: int = 4) -> str:
    """A loss or metric for a key=value line: fixed decimals, `n/a` when absent, `nan`/`inf` as such."""
    if value is None:
        return "n/a"
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    return f"{value:.{digits}f}"


def metric_fields(metrics: dict, prefix: str = "val_") -> str:
    return "".join(f" {prefix}{name}={fmt(value)}" for name, value in metrics.items())


def epoch_line(e: msg.EpochEnded) -> str:
    """`epoch=2/5 iterations=45/45 steps=45 samples=2874 train_loss=... val_loss=... val_acc=... batch_size=32
    accum=1 lr=0.05 elapsed=3.2s` plus global counters and the non-finite count at the end."""
    planned = e.iterations_planned if e.iterations_planned is not None else "?"
    lr = "n/a" if e.lr is None else f"{e.lr:g}"
    return (
        f"epoch={e.epoch}/{e.epochs} iterations={e.iterations}/{planned} steps={e.steps} samples={e.samples_seen}"
        f" train_loss={fmt(e.train_loss)} val_loss={fmt(e.val_loss)}{metric_fields(e.val_metrics)}"
        f" batch_size={e.batch_size} accum={e.accum} lr={lr} elapsed={e.elapsed:.1f}s"
        f" global_iteration={e.global_iteration} global_step={e.global_step} nonfinite={e.nonfinite}"
        f"{peak_fields(e.peak_memory)}"
    )


def peak_fields(peak: Optional[dict]) -> str:
    """` peak_rss_mib=412 peak_gpu_mib=7310` from a sampler's epoch peak (GPU: NVML used, highest GPU)."""
    if not peak:
        return ""
    rss = peak.get("host_rss_mib")
    gpus = peak.get("gpu_memory_used_mib") or {}
    text = f" peak_rss_mib={'n/a' if rss is None else f'{rss:.0f}'}"
    if gpus:
        text += f" peak_gpu_mib={max(gpus.values()):.0f}"
    return text


def progress_line(s: msg.Snapshot) -> str:
    n = s.iterations_in_epoch if s.iterations_in_epoch is not None else "?"
    rate = "n/a" if s.iterations_per_second is None else f"{s.iterations_per_second:.1f}"
    return (
        f"progress epoch={s.epoch}/{s.epochs} iteration={s.iteration_in_epoch}/{n}"
        f" global_iteration={s.global_iteration} loss={fmt(s.loss)} it_per_s={rate}"
        f" elapsed={s.elapsed:.1f}s eta={format_duration(s.eta_seconds)}"
    )


def summary_line(f: msg.Finished) -> str:
    word = "stopped" if f.stopped else "finished"
    return (
        f"{word} epochs={f.epochs_completed} iterations={f.global_iteration} steps={f.global_step}"
        f" samples={f.samples_seen} train_loss={fmt(f.train_loss)} val_loss={fmt(f.val_loss)}"
        f"{metric_fields(f.val_metrics)} elapsed={f.elapsed:.1f}s"
    )


class HeadlessPrinter:
    """A channel listener that prints the run as lines to `out` (stdout by default)."""

    MAX_NONFINITE_LINES = 10

    def __init__(self, out: TextIO | None = None, progress_every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out or sys.stdout
        self.progress_every = progress_every
        self.clock = clock
        self._last_progress = clock()
        self._nonfinite_lines = 0
        self.final: Any = None

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def __call__(self, item: Any) -> None:
        if isinstance(item, msg.Snapshot):
            now = self.clock()
            if item.status == msg.RUNNING and now - self._last_progress >= self.progress_every:
                self._last_progress = now
                self._print(progress_line(item))
        elif isinstance(item, msg.EpochEnded):
            self._last_progress = self.clock()
            self._print(epoch_line(item))
        elif isinstance(item, msg.NonFiniteLoss):
            self._nonfinite_lines += 1
            if self._nonfinite_lines <= self.MAX_NONFINITE_LINES:
                self._print(f"nonfinite_loss global_iteration={item.global_iteration} epoch={item.epoch} value={item.value}")
        elif isinstance(item, msg.BatchSizeChanged):
            self._print(f"batch_size_changed old={item.old} new={item.new} epoch={item.epoch}")
        elif isinstance(item, msg.AccumChanged):
            self._print(f"accum_changed old={item.old} new={item.new} global_iteration={item.global_iteration}")
        elif isinstance(item, msg.Finished):
            self.final = item
            self._print(summary_line(item))
        elif isinstance(item, msg.Failed):
            self.final = item
