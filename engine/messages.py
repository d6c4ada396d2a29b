"""What flows between the training loop and its viewers: one snapshot (latest wins), events, commands.

Plain frozen dataclasses with no torch or textual import, so they pickle across a process boundary
and any viewer (headless printer, TUI, a script) can read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

# Run states shown by every viewer.
RUNNING, PAUSED, STOPPING, FINISHED, FAILED, STOPPED, STARTING = (
    "RUNNING",
    "PAUSED",
    "STOPPING",
    "FINISHED",
    "FAILED",
    "STOPPED",
    "STARTING",
)


@dataclass(frozen=True)
class PendingChange:
    """A change that waits for its safe point, e.g. batch size 64 → 128 at the start of epoch 4."""

    what: str  # "batch size" or "accumulation steps"
    old: int
    new: int
    applies_at: str  # "start of epoch 4", "next window (global iteration 120)"

    def describe(self) -> str:
        return f"{self.what} {self.old} → {self.new} at {self.applies_at}"


@dataclass(frozen=True)
class Snapshot:
    """Where the run stands, published by the loop at a bounded rate (latest wins).

    Counts are completed ones: `iteration_in_epoch` iterations of `iterations_in_epoch` are done.
    Totals are `None` when the dataset has no length. Times are seconds; rates per second of active
    (unpaused) time. Losses are true sample-weighted means, never divided by accumulation steps.
    """

    status: str = STARTING
    job: str = ""
    device: str = "cpu"
    epoch: int = 0  # 1-based current epoch, 0 before the first
    epochs: int = 0
    iteration_in_epoch: int = 0
    iterations_in_epoch: Optional[int] = None
    last_batch_size: Optional[int] = None
    batch_size: int = 0
    accum: int = 1
    drop_last: bool = False
    batch_growth: float = 1.0  # batch-size schedule b_t = b_0 · g^t
    max_batch_size: Optional[int] = None
    lr: Optional[float] = None
    dataset_size: Optional[int] = None
    global_iteration: int = 0
    total_iterations: Optional[int] = None  # planned, under the current batch size and schedule
    global_step: int = 0
    total_steps: Optional[int] = None
    steps_in_epoch: int = 0
    steps_per_epoch: Optional[int] = None
    samples_seen: int = 0
    total_samples: Optional[int] = None
    # accumulation window
    window_position: int = 0  # micro-batches already accumulated in the open window
    window_size: int = 1  # micro-batches this window will hold (short at the end of an epoch)
    window_samples: int = 0
    effective_batch_size: int = 0  # b · k
    # loss
    loss: Optional[float] = None  # last finite iteration loss (mean over its batch)
    window_loss: Optional[float] = None  # sample-weighted mean over the last completed window
    epoch_loss: Optional[float] = None  # sample-weighted running mean over this epoch's finite losses
    best_loss: Optional[float] = None
    val_loss: Optional[float] = None
    val_metrics: dict = field(default_factory=dict)
    best_val_loss: Optional[float] = None
    nonfinite_count: int = 0
    last_nonfinite_iteration: Optional[int] = None
    # speed and time
    iterations_per_second: Optional[float] = None
    samples_per_second: Optional[float] = None
    elapsed: float = 0.0  # wall seconds since the run started
    active_seconds: float = 0.0  # elapsed minus paused time
    eta_seconds: Optional[float] = None
    # control
    pending: tuple[PendingChange, ...] = ()
    history_version: int = 0
    devices: Any = None  # latest device-telemetry sample, when a sampler runs
    time: float = 0.0  # clock reading at publication


# ---------------------------------------------------------------------------------------------
# Events: facts, named in the past tense
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochStarted:
    """An epoch began; its loader was (re)built at this batch size."""

    epoch: int
    epochs: int
    batch_size: int
    accum: int
    iterations: Optional[int]
    last_batch_size: Optional[int]
    global_iteration: int


@dataclass(frozen=True)
class EpochEnded:
    """An epoch finished, with its metrics (losses are sample-weighted means; `None` if none was finite)."""

    epoch: int
    epochs: int
    iterations: int
    iterations_planned: Optional[int]
    steps: int
    samples_seen: int
    train_loss: Optional[float]
    val_loss: Optional[float]
    val_metrics: dict
    batch_size: int
    accum: int
    lr: Optional[float]
    elapsed: float
    global_iteration: int
    global_step: int
    nonfinite: int = 0
    peak_memory: Any = None


@dataclass(frozen=True)
class BatchSizeChanged:
    """The batch size changed at an epoch start (the loader was rebuilt)."""

    old: int
    new: int
    epoch: int
    global_iteration: int


@dataclass(frozen=True)
class AccumChanged:
    """The accumulation steps changed at a window start."""

    old: int
    new: int
    epoch: int
    global_iteration: int


@dataclass(frozen=True)
class Paused:
    """The loop paused before starting `global_iteration + 1`."""

    global_iteration: int


@dataclass(frozen=True)
class Resumed:
    """The loop resumed."""

    global_iteration: int


@dataclass(frozen=True)
class NonFiniteLoss:
    """A NaN or Inf loss at this (1-based) global iteration; left out of every mean."""

    global_iteration: int
    epoch: int
    value: float


@dataclass(frozen=True)
class CommandRejected:
    """A command was refused; the run goes on unchanged."""

    command: Any
    reason: str


@dataclass(frozen=True)
class Finished:
    """The run ended: all epochs done (`stopped=False`) or stopped on request."""

    stopped: bool
    epochs_completed: int
    global_iteration: int
    global_step: int
    samples_seen: int
    elapsed: float
    train_loss: Optional[float]
    val_loss: Optional[float]
    val_metrics: dict


@dataclass(frozen=True)
class Failed:
    """The loop raised; `traceback` is the formatted traceback, `message` one line."""

    message: str
    traceback: str


# ---------------------------------------------------------------------------------------------
# Commands: requests from a viewer, applied by the loop at its safe points
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    """Pause before the next iteration starts."""


@dataclass(frozen=True)
class Resume:
    """Resume a paused run."""


@dataclass(frozen=True)
class Stop:
    """Stop after the current iteration."""


@dataclass(frozen=True)
class StepOnce:
    """While paused: run exactly one iteration, then pause again."""


@dataclass(frozen=True)
class SetBatchSize:
    """Use this batch size from the next epoch start (the loader is rebuilt)."""

    batch_size: int


@dataclass(frozen=True)
class SetAccum:
    """Use this many accumulation steps from the next window start."""

    accum: int
