"""The plan of a whole run: each epoch's iterations, windows, optimizer steps and samples, and the totals,
under a batch-size schedule. Torch-free; `trainmon plan` prints it, a run's totals come from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

from trainmon.engine.core.arithmetic import (
    WINDOW_LIST_LIMIT,
    BatchSizeSchedule,
    PlanError,
    check_positive,
    check_samples,
    check_whole,
    effective_batch_size,
    epoch_counts,
    epoch_samples,
    iterations_per_epoch,
    last_batch_size,
    optimizer_steps_per_epoch,
    window_counts,
    window_sizes,
)

# --------------------------------------------------------------------------------------------
# Whole-run plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochPlan:
    """What one epoch (or a run of identical epochs) will do. `None` counts mean the dataset length
    is unknown.

    `epoch` .. `last_epoch` (1-based, inclusive) are the epochs this plan covers; each of them runs
    exactly as described (the counts are per epoch). Windows: `full_windows` hold `accum`
    micro-batches each and the last one holds `last_window_size` (`accum` when all are full, 0 when
    the epoch has no iterations). `window_sizes` lists every window's size in micro-batches, or is
    `None` when the length is unknown or there are more than `WINDOW_LIST_LIMIT` (10,000) windows.
    """

    epoch: int  # 1-based
    batch_size: int
    accum: int
    iterations: Optional[int]
    last_batch_size: Optional[int]
    window_sizes: Optional[list[int]]
    full_windows: Optional[int]
    last_window_size: Optional[int]
    optimizer_steps: Optional[int]
    samples: Optional[int]
    effective_batch_size: int
    last_epoch: int = 0  # 0: the same as `epoch`

    def __post_init__(self) -> None:
        if self.last_epoch < self.epoch:
            object.__setattr__(self, "last_epoch", self.epoch)

    @property
    def count(self) -> int:
        """How many epochs this plan covers."""
        return self.last_epoch - self.epoch + 1

    def to_dict(self) -> dict:
        return asdict(self)


class _EpochView(Sequence):
    """Every epoch's `EpochPlan`, made on demand from the run's segments (memory does not grow with E)."""

    def __init__(self, segments: list[EpochPlan]) -> None:
        self._segments = segments

    def __len__(self) -> int:
        return sum(s.count for s in self._segments)

    def __iter__(self):
        for s in self._segments:
            for e in range(s.epoch, s.last_epoch + 1):
                yield replace(s, epoch=e, last_epoch=e)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        epoch = index + 1
        for s in self._segments:
            if s.epoch <= epoch <= s.last_epoch:
                return replace(s, epoch=epoch, last_epoch=epoch)
        raise IndexError(index)


@dataclass(frozen=True)
class RunPlan:
    """A run's plan: `segments`, runs of identical epochs (one per distinct batch size), and totals;
    totals are `None` when the dataset length is unknown.

    `epochs` gives one `EpochPlan` per epoch, made on demand. Building and summing cost one step per
    segment, so a plan of 10**8 epochs at one batch size costs what one of 5 does.
    """

    samples_per_epoch: Optional[int]
    drop_last: bool
    segments: list[EpochPlan] = field(default_factory=list)

    @property
    def epochs(self) -> Sequence[EpochPlan]:
        return _EpochView(self.segments)

    @property
    def epoch_count(self) -> int:
        return sum(s.count for s in self.segments)

    def _total(self, name: str) -> Optional[int]:
        total = 0
        for s in self.segments:
            value = getattr(s, name)
            if value is None:
                return None
            total += value * s.count
        return total

    @property
    def total_iterations(self) -> Optional[int]:
        return self._total("iterations")

    @property
    def total_optimizer_steps(self) -> Optional[int]:
        return self._total("optimizer_steps")

    @property
    def total_samples(self) -> Optional[int]:
        return self._total("samples")

    @property
    def effective_batch_size(self) -> int:
        """Effective batch size of the first epoch (the schedule may change it later)."""
        return self.segments[0].effective_batch_size if self.segments else 0

    def to_dict(self) -> dict:
        """A JSON-ready dict; `epochs` lists the segments (`epoch` .. `last_epoch` run alike)."""
        return {
            "samples_per_epoch": self.samples_per_epoch,
            "drop_last": self.drop_last,
            "epochs": [e.to_dict() for e in self.segments],
            "total_iterations": self.total_iterations,
            "total_optimizer_steps": self.total_optimizer_steps,
            "total_samples": self.total_samples,
            "effective_batch_size": self.effective_batch_size,
        }


def scheduled_counts(
    samples: int, schedule: BatchSizeSchedule, first: int, epochs: int, accum: int, drop_last: bool = False
) -> tuple[int, int, int]:
    """`(iterations, optimizer steps, samples)` of `epochs` epochs run at `schedule.at(first)`,
    `schedule.at(first + 1)`, ... with `accum` accumulation steps, for a dataset of known length.

    One step per segment of equal batch sizes (`BatchSizeSchedule.segments`), multiplied out:
    100,000 epochs at a constant batch size cost as little as one. Raises `PlanError` like
    `BatchSizeSchedule.at`.
    """
    it = steps = total = 0
    for _, times, b in schedule.segments(first, epochs):
        n, s, m = epoch_counts(samples, b, accum, drop_last)
        it, steps, total = it + times * n, steps + times * s, total + times * m
    return it, steps, total


def plan_epoch(
    epoch: int, samples: Optional[int], batch_size: int, accum: int, drop_last: bool = False, world_size: int = 1,
    last_epoch: int = 0,
) -> EpochPlan:
    """Plan one epoch (1-based `epoch`), or the identical epochs `epoch` .. `last_epoch`. Raises
    `PlanError` for invalid input or when `drop_last` leaves zero batches."""
    check_positive("accumulation steps", accum)
    n = iterations_per_epoch(samples, batch_size, drop_last)
    steps = optimizer_steps_per_epoch(n, accum)
    full, last = (None, None) if n is None else window_counts(n, accum)
    if n == 0 and samples:
        raise PlanError(
            f"batch size {batch_size} is larger than the {samples} samples and drop_last drops them all: "
            "no batches would run" + (f" (epoch {epoch})" if epoch > 1 else "")
        )
    return EpochPlan(
        epoch=epoch,
        batch_size=batch_size,
        accum=accum,
        iterations=n,
        last_batch_size=last_batch_size(samples, batch_size, drop_last),
        window_sizes=None if n is None or steps > WINDOW_LIST_LIMIT else window_sizes(n, accum),
        full_windows=full,
        last_window_size=last,
        optimizer_steps=steps,
        samples=epoch_samples(samples, batch_size, drop_last),
        effective_batch_size=effective_batch_size(batch_size, accum, world_size),
        last_epoch=last_epoch,
    )


def plan_run(
    samples: Optional[int],
    batch_size: int,
    accum: int = 1,
    epochs: int = 1,
    drop_last: bool = False,
    batch_growth: float = 1.0,
    max_batch_size: Optional[int] = None,
    world_size: int = 1,
) -> RunPlan:
    """Plan a whole run under the batch-size schedule: one `EpochPlan` per run of identical epochs.

    The one plan of a run: `trainmon plan` prints it and a run checks its settings with it before
    training. Costs one step per distinct batch size, whatever `epochs` is. Raises `PlanError` (one
    line) for a batch size or cap outside 1..`MAX_BATCH_SIZE`, a cap below the batch size, accum < 1,
    samples outside 0..`MAX_SAMPLES`, epochs < 0, growth <= 0, an uncapped schedule passing
    `MAX_BATCH_SIZE`, or drop_last leaving zero batches. `samples=None` gives `None` counts, never
    an error.
    """
    check_whole("epochs", epochs, 0)
    check_samples(samples)
    check_positive("accumulation steps", accum)
    check_positive("world size", world_size)
    schedule = BatchSizeSchedule(batch_size, batch_growth, max_batch_size)
    segments = [plan_epoch(t + 1, samples, b, accum, drop_last, world_size, last_epoch=t + count)
                for t, count, b in schedule.segments(0, epochs)]
    return RunPlan(samples_per_epoch=samples, drop_last=drop_last, segments=segments)
