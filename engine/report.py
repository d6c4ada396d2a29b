"""The run as key=value text lines: one per epoch, progress, summary. Pure formatting of events.

Used by headless mode (cli/headless.py) and by the TUI, which prints the summary once the terminal
is back. No torch, no textual.
"""

from __future__ import annotations

from typing import Optional

from . import messages as msg
from .arithmetic import format_duration


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


def event_line(event: object) -> Optional[str]:
    """The key=value line for an event in headless output and `trainmon logs`, or None for events
    that have no line of their own (epoch starts, accepted commands)."""
    if isinstance(event, msg.EpochEnded):
        return epoch_line(event)
    if isinstance(event, msg.NonFiniteLoss):
        return f"nonfinite_loss global_iteration={event.global_iteration} epoch={event.epoch} value={event.value}"
    if isinstance(event, msg.BatchSizeChanged):
        return f"batch_size_changed old={event.old} new={event.new} epoch={event.epoch}"
    if isinstance(event, msg.AccumChanged):
        return f"accum_changed old={event.old} new={event.new} global_iteration={event.global_iteration}"
    if isinstance(event, msg.Paused):
        return f"paused global_iteration={event.global_iteration}"
    if isinstance(event, msg.Resumed):
        return f"resumed global_iteration={event.global_iteration}"
    if isinstance(event, msg.CommandRejected):
        return f"command_rejected command={type(event.command).__name__} reason={quote(event.reason)}"
    if isinstance(event, msg.Finished):
        return summary_line(event)
    if isinstance(event, msg.Failed):
        return f"failed phase={event.phase} message={quote(event.message)}"
    return None


def quote(text: str) -> str:
    """A value with spaces as one double-quoted key=value field (JSON string escaping)."""
    import json

    return json.dumps(text, ensure_ascii=False)
