"""What flows between the training loop and its viewers: one snapshot (latest wins), events, commands.

Frozen msgspec structs with no torch or textual import: they pickle across a process boundary, and
they are the wire format of the control socket and the run directory's event log (tagged JSON,
decoded into these types and validated; never pickle). Any viewer (headless printer, TUI, a
script) can read them.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from trainmon.engine.core.alerts import Alert
from trainmon.engine.core.device_samples import DeviceSample
from trainmon.engine.core.liveness import Liveness, LivenessChanged
from trainmon.engine.core.message_base import Message
from trainmon.engine.core.snapshot_parts import PendingChange, RankFigures
from trainmon.engine.core.status import (  # noqa: F401 - re-exported: every reader says msg.RUNNING
    FAILED,
    FINAL_STATES,
    FINISHED,
    LOST,
    PAUSED,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    RunStatus,
)
from trainmon.engine.core.throughput import Throughput


class Snapshot(Message):
    """Where the run stands, published by the loop at a bounded rate (latest wins).

    Counts are completed ones: `iteration_in_epoch` iterations of `iterations_in_epoch` are done.
    Totals are `None` when the dataset has no length. Times are seconds; rates per second of active
    (unpaused) time. Losses are true sample-weighted means, never divided by accumulation steps.
    """

    status: RunStatus = STARTING
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
    val_metrics: dict = {}
    best_val_loss: Optional[float] = None
    nonfinite_count: int = 0
    last_nonfinite_iteration: Optional[int] = None
    # speed and time
    iterations_per_second: Optional[float] = None
    samples_per_second: Optional[float] = None
    throughput: Optional[Throughput] = None
    elapsed: float = 0.0  # wall seconds since the run started
    active_seconds: float = 0.0  # elapsed minus paused time
    validation_seconds: float = 0.0  # of active time: validating, left out of the rate and the ETA
    checkpoint_seconds: float = 0.0  # of active time: saving checkpoints, left out likewise
    epoch_seconds: Optional[float] = None  # the last full epoch's active time (validation and saves included)
    eta_seconds: Optional[float] = None  # training time left at the rate shown; None while it is estimated
    # control
    pending: tuple[PendingChange, ...] = ()
    history_version: int = 0
    # checkpoints
    checkpoints: bool = False  # the run saves checkpoints (off without a run directory or with --no-checkpoints)
    last_checkpoint: Optional["CheckpointSaved"] = None  # the newest save of this run
    # gradient clipping (once per window, on the accumulated gradient)
    clip_grad_norm: Optional[float] = None  # the max 2-norm, when the run clips
    grad_norm: Optional[float] = None  # the newest optimizer step's pre-clip total 2-norm
    clipped_steps: int = 0  # steps whose norm was above clip_grad_norm
    precision: str = "fp32"
    learning_rates: tuple[float, ...] = ()  # every parameter group's current rate, in group order
    steps_skipped: int = 0  # optimizer steps a grad scaler skipped (inf/NaN gradients), part of global_step
    # a tracked loop (`trainmon.track`, a framework callback) that cannot take a change says why (keys dimmed)
    tracked: bool = False  # a loop trainmon does not run (`trainmon.track`, a framework callback)
    batch_size_off: Optional[str] = None
    accum_off: Optional[str] = None
    # a distributed run (torchrun): every rank's figures, rank order; `loss` above is then the mean over ranks
    world_size: int = 1
    ranks: tuple[RankFigures, ...] = ()
    devices: Optional[DeviceSample] = None  # latest device-telemetry sample, when a sampler runs
    time: float = 0.0  # clock reading at publication
    liveness: Optional[Liveness] = None  # the heartbeat's phase and the last iteration's age (engine/core/liveness.py)


# ---------------------------------------------------------------------------------------------
# Events: facts, named in the past tense
# ---------------------------------------------------------------------------------------------


class EpochStarted(Message):
    """An epoch began; its loader was (re)built at this batch size."""

    epoch: int
    epochs: int
    batch_size: int
    accum: int
    iterations: Optional[int]
    last_batch_size: Optional[int]
    global_iteration: int


class EpochEnded(Message):
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
    peak_memory: Optional[dict[str, Any]] = None  # the sampler's epoch_peak()
    steps_skipped: int = 0  # optimizer steps a grad scaler skipped so far in the run (part of global_step)
    learning_rates: tuple[float, ...] = ()  # every parameter group's rate at the epoch's end, when they differ
    grad_norm: Optional[float] = None  # the epoch's last optimizer step's pre-clip total 2-norm, where known
    data_wait: Optional[float] = None  # 0..1 of the epoch's loop time waiting for batches (engine/run/loop_health.py)
    monitor: Optional[float] = None  # 0..1 of that loop time inside trainmon's own calls, measured (ibid.)
    throughput: Optional[Throughput] = None  # at the epoch's end, in the job's units (engine/core/throughput.py)
    # the epoch's train losses read, finite or not: `train_loss` is the mean of `train_losses - nonfinite` of them
    # (`None`: an event from before this count)
    train_losses: Optional[int] = None


class BatchSizeChanged(Message):
    """The batch size changed at an epoch start (the loader was rebuilt)."""

    old: int
    new: int
    epoch: int
    global_iteration: int


class AccumChanged(Message):
    """The accumulation steps changed at a window start."""

    old: int
    new: int
    epoch: int
    global_iteration: int


class BatchSizeReverted(Message):
    """An iteration ran out of device memory after a batch-size increase: the batch size went back from
    `old` to `new` (the last one that worked) and epoch `epoch` runs again from its start; the failed
    iteration's partial gradients were dropped. Increases to `old` or more now need asking twice."""

    old: int
    new: int
    epoch: int
    iteration_in_epoch: int  # iterations that had run in the epoch before the one that failed
    global_iteration: int
    message: str


class Paused(Message):
    """The loop paused before starting `global_iteration + 1`."""

    global_iteration: int


class Resumed(Message):
    """The loop resumed."""

    global_iteration: int


class NonFiniteLoss(Message):
    """A NaN or Inf loss at this (1-based) global iteration; left out of every mean."""

    global_iteration: int
    epoch: int
    value: float


class Warned(Message):
    """Something looked wrong but the run goes on (a doubtful loss shape, an epoch that yielded no
    batch): `message` is one line for the screen and the log; `epoch` is 0 before training."""

    message: str
    epoch: int = 0
    global_iteration: int = 0


class CheckpointSaved(Message):
    """A checkpoint was written whole (temporary file, fsync, rename): where, how big, how long.

    `size` is bytes; `seconds` the time the save took (training waited that long); `reason` one of
    `CHECKPOINT_REASONS`. The position is the run's after `global_iteration` iterations: epoch
    `epoch` (1-based) had run `iteration_in_epoch` iterations, all of them when `epoch_complete`.
    """

    path: str
    size: int
    seconds: float
    reason: str
    epoch: int
    iteration_in_epoch: int
    global_iteration: int
    epoch_complete: bool


CHECKPOINT_REASONS = ("epoch end", "timer", "stop", "signal", "request")


class EpochRun(Message):
    """`epochs` consecutive epochs of one shape, from epoch `first_epoch`: each ran `iterations`
    iterations of `batch_size` (the last one `last_batch_size`) in windows of `accum`, `steps`
    optimizer steps; the first began after `global_iteration` iterations and `global_step` steps."""

    first_epoch: int
    epochs: int
    global_iteration: int
    global_step: int
    iterations: int
    batch_size: int
    last_batch_size: Optional[int]
    accum: int
    steps: int


class EventsSummarized(Message):
    """Routine events folded into one record of the event log (never sent to a viewer): the log was
    past its byte budget (run directory ≤ 50 MB a day), so epoch starts and ends, epoch-end and timer
    checkpoints and non-finite losses between `first_seq` and `last_seq` are kept as this summary.

    `epochs` rebuild the exact iteration → (epoch, optimizer step) map; `last_epoch` is the newest
    folded epoch end, whole; `train_loss` is the mean of the folded epochs' train losses (min, max
    beside it; `None` when none was finite); `nonfinite` counts the folded NaN/Inf losses, the first
    and last at global iterations `nonfinite_first`..`nonfinite_last`; `checkpoints` counts the folded
    saves, `last_checkpoint` is the newest, whole."""

    first_seq: int
    last_seq: int
    epochs: list[EpochRun] = []
    epochs_ended: int = 0  # folded epoch ends, the first of epoch `first_epoch`
    first_epoch: Optional[int] = None
    last_epoch: Optional[EpochEnded] = None
    open_epoch: Optional[EpochStarted] = None  # folded start of an epoch whose end comes later
    train_loss: Optional[float] = None
    train_loss_min: Optional[float] = None
    train_loss_max: Optional[float] = None
    nonfinite: int = 0
    nonfinite_first: Optional[int] = None
    nonfinite_last: Optional[int] = None
    checkpoints: int = 0
    last_checkpoint: Optional[CheckpointSaved] = None


class CheckpointFailed(Message):
    """A save failed (disk full, permissions, a model state torch cannot save): the run goes on and
    the previous checkpoint stays as it was. `message` is one line."""

    message: str
    reason: str
    global_iteration: int


class RunResumed(Message):
    """The run went on from the checkpoint at `path` in a new engine process.

    Its position is the checkpoint's (`epoch`, `iteration_in_epoch`, `global_iteration`);
    `lost_iterations` ran after that checkpoint before the run stopped and are run again;
    `skipped` names newer checkpoints that could not be read (one line each); `changes` are
    settings changed by `trainmon resume` options, applied like pending changes.
    """

    path: str
    epoch: int
    iteration_in_epoch: int
    global_iteration: int
    lost_iterations: int = 0
    skipped: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()


class CommandAccepted(Message):
    """A command was applied, or queued as a pending change (it shows in the snapshot's `pending`)."""

    command: "AnyCommand"


class CommandRejected(Message):
    """A command was refused; the run goes on unchanged."""

    command: "AnyCommand"
    reason: str


class Finished(Message):
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


class Failed(Message):
    """The loop raised: `message` is one line; `traceback` the whole formatted traceback;
    `user_traceback` only the frames of the user's own code (empty when none were involved)."""

    message: str
    traceback: str
    user_traceback: str = ""
    phase: str = "training"  # "setup": the job could not be built or checked (bad job or option: exit 2)


# ---------------------------------------------------------------------------------------------
# Commands: requests from a viewer, applied by the loop at its safe points
# ---------------------------------------------------------------------------------------------


class Command(Message, kw_only=True):
    """Base of every command. `id`, chosen by the viewer that sends it, comes back in the
    `CommandAccepted` or `CommandRejected` that answers it ("" when nobody waits for the answer)."""

    id: str = ""


class Pause(Command):
    """Pause before the next iteration starts."""


class Resume(Command):
    """Resume a paused run."""


class Stop(Command):
    """Stop after the current iteration."""


class StepOnce(Command):
    """While paused: run exactly one iteration, then pause again."""


class SetBatchSize(Command):
    """Use this batch size from the next epoch start (the loader is rebuilt)."""

    batch_size: int


class SetAccum(Command):
    """Use this many accumulation steps from the next window start."""

    accum: int


class SaveCheckpoint(Command):
    """Save a checkpoint at the next safe point (answered by `CheckpointSaved` or `CheckpointFailed`)."""


AnyCommand = Union[Pause, Resume, Stop, StepOnce, SetBatchSize, SetAccum, SaveCheckpoint]
Event = Union[EpochStarted, EpochEnded, BatchSizeChanged, BatchSizeReverted, AccumChanged, Paused, Resumed, NonFiniteLoss, Warned,
              CheckpointSaved, CheckpointFailed, RunResumed, CommandAccepted, CommandRejected, Finished, Failed,
              EventsSummarized, Alert, LivenessChanged]
FINAL_EVENTS = (Finished, Failed)
