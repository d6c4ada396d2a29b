"""A run's records as plain rows — iterations, epochs, changes — read from its run directory alone.

Shared by `trainmon export` (CSV, JSONL, TensorBoard) and the live TensorBoard sink, so a finished,
failed, lost or live run (what is recorded so far) exports the same way. No torch, no textual.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import msgspec

from trainmon.engine.core import messages as msg
from trainmon.engine.core.report import event_line
from trainmon.engine.core.throughput import throughput_record
from trainmon.engine.record.rundir import RunInfo, read_events, read_loss

STEP_AXES = ("global_iteration", "optimizer_step")
FORMAT = 1


@dataclass
class Segment:
    """Iterations after `start` (a global iteration) run in windows of `accum`, the first window
    opening at `start`: an epoch start or an accumulation change (both are window starts)."""

    start: int
    step: int  # optimizer steps done before `start`
    accum: int
    epoch: int
    batch_size: int
    last_batch_size: Optional[int]
    epoch_last: Optional[int]  # global iteration of the epoch's last batch (None: unknown length)
    run: Optional[msg.EpochRun] = None  # epochs 2.. of a folded run of same-shaped epochs (see find)


class StepMap:
    """Global iteration → (epoch, optimizer step, batch size) from a run's epoch and accumulation
    events, by the house rules: a window holds `accum` micro-batches, the last window of an epoch is
    short and stepped, so iteration x of a segment lands on step `step + ceil((x - start) / accum)`."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self._starts: list[int] = []  # the segments' starts, for bisect (rebuilt when segments change)
        self._starts_of: Optional[list[Segment]] = None
        self.steps_done = 0  # global_step at the newest epoch end

    def take(self, event: Any) -> None:
        """Follow one event of the log, in order (a resume's rewind is the reader's: it needs the epochs)."""
        if isinstance(event, msg.EpochStarted):
            self.epoch_started(event)
        elif isinstance(event, msg.AccumChanged):
            self.accum_changed(event)
        elif isinstance(event, msg.EpochEnded):
            self.steps_done = event.global_step
        elif isinstance(event, msg.EventsSummarized):
            self.epochs_summarized(event)

    def epoch_started(self, e: msg.EpochStarted) -> None:
        last = e.global_iteration + e.iterations if e.iterations is not None else None
        self.segments.append(Segment(e.global_iteration, self.steps_done, e.accum, e.epoch, e.batch_size,
                                     e.last_batch_size, last))

    def accum_changed(self, a: msg.AccumChanged) -> None:
        here = self.find(a.global_iteration + 1)
        if here is None:
            return
        step = here.step + math.ceil((a.global_iteration - here.start) / here.accum)
        self.segments.append(Segment(a.global_iteration, step, a.new, here.epoch, here.batch_size,
                                     here.last_batch_size, here.epoch_last))

    def epochs_summarized(self, s: msg.EventsSummarized) -> None:
        """Epochs folded into one record of the log (it was past its daily bytes): each run of
        same-shaped epochs gives its segments back, the same as their starts would have."""
        for r in s.epochs:
            self.segments.append(Segment(r.global_iteration, r.global_step, r.accum, r.first_epoch, r.batch_size,
                                         r.last_batch_size, r.global_iteration + r.iterations))
            if r.epochs > 1:  # the rest of the run: one marker segment, expanded by find()
                self.segments.append(Segment(r.global_iteration + r.iterations, r.global_step + r.steps, r.accum,
                                             r.first_epoch + 1, r.batch_size, r.last_batch_size, None, run=r))
        if s.last_epoch is not None:
            self.steps_done = s.last_epoch.global_step
        if s.open_epoch is not None:
            self.epoch_started(s.open_epoch)

    def rewind(self, global_iteration: int, steps_done: int) -> None:
        """A resume from a checkpoint at `global_iteration`: what was recorded after it ran again."""
        self.segments = [s for s in self.segments if s.start <= global_iteration]
        self.steps_done = steps_done

    def find(self, x: float) -> Optional[Segment]:
        """The segment holding 1-based global iteration `x` (the latest one starting before it); in a
        folded run of same-shaped epochs, the segment of `x`'s own epoch."""
        if self._starts_of is not self.segments or len(self._starts) != len(self.segments):
            self._starts, self._starts_of = [s.start for s in self.segments], self.segments
        i = bisect.bisect_left(self._starts, x) - 1
        if i < 0:
            return None
        s = self.segments[i]
        r = s.run
        if r is None:
            return s
        k = min(int((x - 1 - r.global_iteration) // r.iterations), r.epochs - 1)  # epoch k of the run (0-based)
        start = r.global_iteration + k * r.iterations
        return Segment(start, r.global_step + k * r.steps, r.accum, r.first_epoch + k, r.batch_size,
                       r.last_batch_size, start + r.iterations)

    def step_of(self, x: float) -> Optional[int]:
        """The optimizer step iteration `x`'s window produces (1-based), None before any epoch start."""
        s = self.find(x)
        return None if s is None else s.step + math.ceil((x - s.start) / s.accum)

    def epoch_of(self, x: float) -> Optional[int]:
        s = self.find(x)
        return None if s is None else s.epoch

    def weight_of(self, x: float) -> float:
        """Samples in iteration `x`'s batch (its loss's weight in its window's mean): the epoch's batch
        size, the last batch's size for an epoch's last iteration; 1 when unknown."""
        s = self.find(x)
        if s is None:
            return 1.0
        if s.epoch_last is not None and int(x) == s.epoch_last and s.last_batch_size:
            return float(s.last_batch_size)
        return float(s.batch_size or 1)


@dataclass
class RunRecords:
    """Everything an export writes: `run` (identity), `iterations` (records `iteration` and
    `aggregate`, oldest first), `epochs` (one per completed epoch) and `events` (changes, resumes,
    checkpoints, pauses, the end: the events `trainmon logs` prints, epochs aside), each a flat dict
    with a `record` field. Losses are floats; NaN and Inf stay floats here (formats spell them)."""

    run: dict[str, Any]
    iterations: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    steps: StepMap = field(default_factory=StepMap)


def record_name(event: Any) -> str:
    """`BatchSizeChanged` → `batch_size_changed`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(event).__name__).lower()


def epoch_record(e: msg.EpochEnded) -> dict[str, Any]:
    """One completed epoch as a flat row: counters, losses, `val_<metric>`, settings, memory peaks
    (MiB: host RSS, and on a GPU the highest device's NVML used and torch peak)."""
    peak = e.peak_memory or {}
    gpus = peak.get("gpu_memory_used_mib") or {}
    torch_peaks = peak.get("torch_peak_mib") or {}
    return {
        "record": "epoch", "epoch": e.epoch, "epochs": e.epochs, "global_iteration": e.global_iteration,
        "global_step": e.global_step, "iterations": e.iterations, "steps": e.steps,
        "samples_seen": e.samples_seen, "train_loss": e.train_loss, "val_loss": e.val_loss,
        **{f"val_{name}": value for name, value in e.val_metrics.items()},
        "batch_size": e.batch_size, "accum": e.accum, "lr": e.lr, "elapsed": e.elapsed, "nonfinite": e.nonfinite,
        "train_losses": e.train_losses,  # losses read; train_loss is the mean of the finite ones (nonfinite: the rest)
        "peak_rss_mib": peak.get("host_rss_mib"), "peak_gpu_mib": max(gpus.values()) if gpus else None,
        "peak_torch_mib": max(torch_peaks.values()) if torch_peaks else None,
        "grad_norm": e.grad_norm, **{f"lr_group_{i}": rate for i, rate in enumerate(e.learning_rates)},
        "data_wait": e.data_wait, "monitor": e.monitor,  # shares of the epoch's loop time (loop_health.py)
        **throughput_record(e.throughput),  # samples_per_s, tokens_per_s, mfu... (engine/core/throughput.py)
    }


def event_record(seq: int, event: Any, steps: StepMap) -> dict[str, Any]:
    fields = msgspec.to_builtins(event)
    fields.pop("type", None)
    record = {"record": record_name(event), "seq": seq, **fields}
    gi = record.get("global_iteration")
    if isinstance(gi, int):
        record["optimizer_step"] = steps.step_of(gi) if gi > 0 else 0
    return record


def summary_record(seq: int, s: msg.EventsSummarized, steps: StepMap) -> dict[str, Any]:
    """A folded stretch of the log as one event row: which epochs (their ends; the newest is also an
    `epoch` row), the mean/min/max of their train losses, the non-finite losses and saves it counts."""
    last = s.last_epoch
    gi = last.global_iteration if last is not None else None
    return {"record": "events_summarized", "seq": seq, "first_seq": s.first_seq, "last_seq": s.last_seq,
            "first_epoch": s.first_epoch, "epoch": last.epoch if last else None,
            "epochs_folded": s.epochs_ended, "global_iteration": gi,
            "optimizer_step": last.global_step if last else None,
            "train_loss_mean": s.train_loss, "train_loss_min": s.train_loss_min, "train_loss_max": s.train_loss_max,
            "nonfinite": s.nonfinite, "nonfinite_first": s.nonfinite_first, "nonfinite_last": s.nonfinite_last,
            "checkpoints": s.checkpoints,
            "last_checkpoint": s.last_checkpoint.path if s.last_checkpoint is not None else None}


def read_records(run: RunInfo) -> RunRecords:
    """The records of `run` as they stand now. Epochs recorded after the checkpoint a resume went on
    from were run again: the later records replace them (as loss.json's history already does)."""
    info = run.info
    records = RunRecords({"record": "run", "format": FORMAT, "id": run.id, "job": info.get("job"),
                          "status": run.status.value, "started": info.get("started"),
                          "settings": info.get("settings"), "path": str(run.path),
                          "alerts": int(info.get("alerts") or 0)})
    steps = records.steps
    for seq, event in read_events(run.path):
        steps.take(event)
        if isinstance(event, msg.EpochEnded):
            records.epochs.append(epoch_record(event))
            continue
        if isinstance(event, msg.EventsSummarized):
            if event.last_epoch is not None:
                records.epochs.append(epoch_record(event.last_epoch))
            records.events.append(summary_record(seq, event, steps))
            continue
        if isinstance(event, msg.RunResumed):
            records.epochs = [e for e in records.epochs if e["global_iteration"] <= event.global_iteration]
            steps.rewind(event.global_iteration, records.epochs[-1]["global_step"] if records.epochs else 0)
        if event_line(event) is not None:
            records.events.append(event_record(seq, event, steps))
    records.iterations = iteration_records(read_loss(run.path) or {}, steps)
    return records


def iteration_records(loss: dict[str, Any], steps: StepMap) -> list[dict[str, Any]]:
    """loss.json as rows, oldest first: each bucket as `aggregate` (first/last iteration, count, mean,
    min, max; its epoch and step are its last iteration's), each recent or non-finite point as
    `iteration` (global iteration, epoch, optimizer step, loss)."""
    rows = []
    for first, last, count, mean, low, high in loss.get("buckets", []):
        rows.append({"record": "aggregate", "global_iteration": int(last), "optimizer_step": steps.step_of(last),
                     "epoch": steps.epoch_of(last), "first_iteration": int(first), "last_iteration": int(last),
                     "count": int(count), "mean": mean, "min": low, "max": high})
    for x, y in [*loss.get("recent", []), *loss.get("nonfinite", [])]:
        rows.append({"record": "iteration", "global_iteration": int(x), "optimizer_step": steps.step_of(x),
                     "epoch": steps.epoch_of(x), "loss": float(y)})
    rows.sort(key=lambda r: r["global_iteration"])
    return rows


def window_losses(iterations: list[dict[str, Any]], steps: StepMap) -> list[tuple[int, float]]:
    """`(optimizer step, loss)` per step from the exact iteration records: the sample-weighted mean
    of its window's finite losses (the loss of the update, as the accumulation policy weights it)."""
    sums: dict[int, list[float]] = {}
    for r in iterations:
        if r["record"] != "iteration" or r["optimizer_step"] is None or not math.isfinite(r["loss"]):
            continue
        w = steps.weight_of(r["global_iteration"])
        acc = sums.setdefault(r["optimizer_step"], [0.0, 0.0])
        acc[0] += w * r["loss"]
        acc[1] += w
    return [(step, total / weight) for step, (total, weight) in sorted(sums.items())]
