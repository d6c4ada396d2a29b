"""A run as TensorBoard scalars and text, through torch's `SummaryWriter`: after the fact
(`trainmon export --format tensorboard`) or live (`--tensorboard DIR`, a sink of the run's channel).

Tags: `train/loss` (each iteration; on the optimizer-step axis each window's sample-weighted mean), live
`train/lr`, `train/lr_group_<i>` (groups whose rates differ) and `train/grad_norm` (pre-clip) at each publication,
`train/loss_aggregate_mean|min|max` (older iterations the run directory keeps only as aggregates,
at each aggregate's last iteration), `epoch/<field>` (per epoch: losses, `val_<metric>`, batch size,
accumulation, lr, samples seen, memory peaks) at the epoch's last iteration, `events` (text: batch-size
and accumulation changes, resumes, checkpoints, pauses, the end) and `trainmon/step_axis` (text, step 0:
what the steps count). The tensorboard package is imported only here, only when a writer opens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.history import HistoryDelta
from trainmon.engine.core.rates import rate_scalars
from trainmon.engine.core.report import event_line
from trainmon.engine.record.export import STEP_AXES, RunRecords, epoch_record, window_losses

EPOCH_FIELDS = ("train_loss", "val_loss", "batch_size", "accum", "lr", "samples_seen", "epoch", "global_step",
                "global_iteration", "iterations", "steps", "elapsed", "nonfinite", "train_losses", "peak_rss_mib", "peak_gpu_mib",
                "peak_torch_mib", "grad_norm", "data_wait", "monitor",
                "samples_per_s", "tokens_per_s", "mfu")  # every number epochs.csv has
MISSING = "TensorBoard files need the tensorboard package: pip install tensorboard"
AXIS_NOTES = {
    "global_iteration": "Steps are global iterations (forward + backward passes over the whole run, from 1).",
    "optimizer_step": "Steps are optimizer steps (global step, from 1); train/loss is each step's window "
                      "mean, sample-weighted like the accumulated gradient.",
}


class TensorBoardMissing(RuntimeError):
    """The tensorboard package is not installed (the message is one line saying how to install it)."""


def open_writer(log_dir: Path, step_axis: str = "global_iteration", purge_step: Optional[int] = None) -> Any:
    """A `torch.utils.tensorboard.SummaryWriter` on `log_dir` (made if missing) whose events file name
    ends in `.<step_axis>`. Raises `TensorBoardMissing`, or `OSError` when the folder cannot be made."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TensorBoardMissing(MISSING) from None
    Path(log_dir).mkdir(parents=True, exist_ok=True)  # SummaryWriter would swallow nothing but a clear error
    writer = SummaryWriter(str(log_dir), purge_step=purge_step, filename_suffix=f".{step_axis}")
    writer.add_text("trainmon/step_axis", AXIS_NOTES[step_axis], 0)
    return writer


def write_epoch(writer: Any, record: dict[str, Any], step: int) -> None:
    for name, value in record.items():
        if (name in EPOCH_FIELDS or name.startswith(("val_", "lr_group_"))) and isinstance(value, (int, float)) \
                and not isinstance(value, bool):
            writer.add_scalar(f"epoch/{name}", value, step)


def write_records(writer: Any, records: RunRecords, step_axis: str) -> dict[str, int]:
    """Write a whole run's records on `step_axis` (one of `STEP_AXES`); returns counts per kind.
    Points without a step on that axis (before the first recorded epoch start) are left out."""
    if step_axis not in STEP_AXES:
        raise ValueError(f"step axis must be one of {', '.join(STEP_AXES)}, got {step_axis!r}")
    by_iteration = step_axis == "global_iteration"
    counts = {"loss": 0, "aggregates": 0, "epochs": 0, "events": 0}
    if by_iteration:
        points = [(r["global_iteration"], r["loss"]) for r in records.iterations if r["record"] == "iteration"]
    else:
        points = window_losses(records.iterations, records.steps)
    for step, loss in points:
        writer.add_scalar("train/loss", loss, step)
        counts["loss"] += 1
    for r in records.iterations:
        step = r["global_iteration"] if by_iteration else r["optimizer_step"]
        if r["record"] == "aggregate" and step is not None:
            for name in ("mean", "min", "max"):
                writer.add_scalar(f"train/loss_aggregate_{name}", r[name], step)
            counts["aggregates"] += 1
    for e in records.epochs:
        write_epoch(writer, e, e["global_iteration" if by_iteration else "global_step"])
        counts["epochs"] += 1
    for e in records.events:
        step = e.get("global_iteration" if by_iteration else "optimizer_step")
        writer.add_text("events", _event_text(e), step if isinstance(step, int) else 0)
        counts["events"] += 1
    writer.flush()
    return counts


def _event_text(record: dict[str, Any]) -> str:
    fields = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("record", "seq"))
    return f"{record['record']} {fields}"


class TensorBoardSink:
    """A channel sink writing the run live on the global-iteration axis: each iteration's loss as it
    is published (≤ 10 times a second, the points since the last publication), the epoch scalars at
    each epoch end (then a flush), events as text. The writer opens on construction (torch is already
    imported by then); `purge_step` (a resume's first iteration) drops what a resumed run runs again.
    Any error raised here makes the channel drop this sink with one line; training goes on."""

    def __init__(self, log_dir: Path, purge_step: Optional[int] = None) -> None:
        self.writer = open_writer(Path(log_dir), "global_iteration", purge_step)
        self._last_x = float(purge_step - 1) if purge_step else 0.0
        self._rates_at = self._last_x  # the global iteration of the last `train/lr` written

    def publish(self, snapshot: msg.Snapshot, delta: HistoryDelta) -> None:
        for x, y in delta.points:
            if x > self._last_x and float(x).is_integer():  # a reset delta repeats older, averaged points
                self.writer.add_scalar("train/loss", y, int(x))
                self._last_x = x
        if snapshot.global_iteration > self._rates_at:  # the live rate and gradient norm, once per publication
            self._rates_at = snapshot.global_iteration
            for name, value in rate_scalars(snapshot.lr, snapshot.learning_rates, snapshot.grad_norm).items():
                self.writer.add_scalar(f"train/{name}", value, snapshot.global_iteration)

    def emit(self, event: Any) -> None:
        if isinstance(event, msg.EpochEnded):
            write_epoch(self.writer, epoch_record(event), event.global_iteration)
            self.writer.flush()
            return
        line = event_line(event)
        if line is not None:
            step = getattr(event, "global_iteration", None)
            self.writer.add_text("events", line, step if isinstance(step, int) else int(self._last_x))
        if isinstance(event, msg.FINAL_EVENTS):
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()
