"""Exact arithmetic of an epoch split over ranks (torchrun, DDP), with no torch import.

`torch.utils.data.DistributedSampler` gives every rank the same number of samples, padding with
repeated indices or dropping the tail; each rank's data loader then batches its share. This module
says, to the sample, what that yields, so `trainmon plan --world-size W` and a distributed run show
what torch really does (tests/test_distributed_plan.py compares it with a real sampler and loader).

trainmon's one `drop_last` drives both of torch's: the sampler's (drop the tail `m mod W` instead of
padding) and each rank's loader's (drop its last partial batch). torch never passes a loader's
`drop_last` on to its sampler; a script that sets only the loader's pads, then drops — duplicates
trained on while real samples are left out, which trainmon does not do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from trainmon.engine.core.arithmetic import (
    BatchSizeSchedule,
    PlanError,
    check_positive,
    check_samples,
    check_whole,
    iterations_per_epoch,
)
from trainmon.engine.core.plan import EpochPlan, plan_epoch


def rank_samples(samples: int, world_size: int, drop_last: bool = False) -> tuple[int, int]:
    """`(samples per rank, padded)` that `DistributedSampler(num_replicas=world_size, drop_last=...)`
    gives for a training set of `samples` samples.

    Without `drop_last` each rank gets `ceil(m / W)`: the sampler repeats the first `padded =
    ceil(m/W)·W - m` indices (0 to W-1 duplicates over all ranks, each the last sample of one of the
    last `padded` ranks). With `drop_last` each rank gets `floor(m / W)`, the last `m mod W` samples
    are left out and `padded` is 0. Integer arithmetic; torch's float formulas give the same for
    every `m` up to `MAX_SAMPLES`. Raises `PlanError` for samples outside 0..`MAX_SAMPLES` (or
    unknown, `None`: the sampler needs `len(dataset)`) or a world size < 1.
    """
    if samples is None:
        raise PlanError("a distributed run needs the training set's length (DistributedSampler takes "
                        "len(dataset)); this dataset has no __len__")
    check_samples(samples)
    check_positive("world size", world_size)
    if drop_last:
        return samples // world_size, 0
    per_rank = -(-samples // world_size)
    return per_rank, per_rank * world_size - samples


@dataclass(frozen=True)
class DistributedEpochPlan:
    """One epoch (or the identical epochs `epoch` .. `last_epoch`) of a run over `world_size` ranks.

    Per rank: `samples_per_rank` (the sampler's share, padding included) and `rank`, the plan of one
    rank's loader over that share — iterations, last batch, windows; every rank gets the same counts.
    Over all ranks together, per epoch: `samples` (m, real samples in the training set), `padded`
    (duplicates the sampler adds), `samples_seen` (real samples trained on, padding left out) and
    `dropped` (real samples no rank sees with drop_last: the sampler's tail plus each loader's last
    partial batch). The ranks step together, so `optimizer_steps` is the epoch's count of updates,
    each behind `effective_batch_size = b · k · W` samples (fewer in a short window).
    """

    world_size: int
    samples: int
    samples_per_rank: int
    padded: int
    rank: EpochPlan

    @property
    def epoch(self) -> int:
        return self.rank.epoch

    @property
    def last_epoch(self) -> int:
        return self.rank.last_epoch

    @property
    def count(self) -> int:
        """How many epochs this plan covers."""
        return self.rank.count

    @property
    def batch_size(self) -> int:
        return self.rank.batch_size

    @property
    def accum(self) -> int:
        return self.rank.accum

    @property
    def optimizer_steps(self) -> int:
        return self.rank.optimizer_steps

    @property
    def effective_batch_size(self) -> int:
        return self.rank.effective_batch_size

    @property
    def samples_seen(self) -> int:
        """Real samples trained on over all ranks in one epoch: what the loaders yield, less the padding."""
        return self.world_size * self.rank.samples - self.padded

    @property
    def dropped(self) -> int:
        """Real samples no rank sees in one epoch (0 without drop_last)."""
        return self.samples - self.samples_seen

    def to_dict(self) -> dict:
        """A JSON-ready dict: per-rank counts under `per_rank` (`samples`: what one rank's loader yields in
        the epoch, padding included), the rest over all ranks."""
        r = self.rank
        return {
            "epoch": self.epoch,
            "last_epoch": self.last_epoch,
            "batch_size": self.batch_size,
            "accum": self.accum,
            "per_rank": {
                "samples": r.samples,
                "iterations": r.iterations,
                "last_batch_size": r.last_batch_size,
                "window_sizes": r.window_sizes,
                "full_windows": r.full_windows,
                "last_window_size": r.last_window_size,
            },
            "optimizer_steps": self.optimizer_steps,
            "samples_seen": self.samples_seen,
            "padded": self.padded,
            "dropped": self.dropped,
            "effective_batch_size": self.effective_batch_size,
        }


@dataclass(frozen=True)
class DistributedRunPlan:
    """A distributed run's plan: `segments`, runs of identical epochs (one per distinct batch size),
    and totals. Per-rank totals say so in their names; the others are over all ranks."""

    samples_per_epoch: int
    world_size: int
    drop_last: bool
    samples_per_rank: int
    padded: int  # per epoch, over all ranks
    segments: list[DistributedEpochPlan] = field(default_factory=list)

    def _total(self, value) -> int:
        return sum(value(s) * s.count for s in self.segments)

    @property
    def total_iterations_per_rank(self) -> int:
        return self._total(lambda s: s.rank.iterations)

    @property
    def total_optimizer_steps(self) -> int:
        return self._total(lambda s: s.optimizer_steps)

    @property
    def total_samples_seen(self) -> int:
        """Real samples trained on over all ranks and epochs, padding left out."""
        return self._total(lambda s: s.samples_seen)

    @property
    def total_padded(self) -> int:
        return self._total(lambda s: s.padded)

    @property
    def effective_batch_size(self) -> int:
        """Effective batch size of the first epoch (the schedule may change it later)."""
        return self.segments[0].effective_batch_size if self.segments else 0

    def to_dict(self) -> dict:
        """A JSON-ready dict; `epochs` lists the segments (`epoch` .. `last_epoch` run alike)."""
        return {
            "samples_per_epoch": self.samples_per_epoch,
            "drop_last": self.drop_last,
            "world_size": self.world_size,
            "samples_per_rank": self.samples_per_rank,
            "padded": self.padded,
            "epochs": [s.to_dict() for s in self.segments],
            "total_iterations_per_rank": self.total_iterations_per_rank,
            "total_optimizer_steps": self.total_optimizer_steps,
            "total_samples_seen": self.total_samples_seen,
            "total_padded": self.total_padded,
            "effective_batch_size": self.effective_batch_size,
        }


def plan_distributed_epoch(
    samples: int, world_size: int, batch_size: int, accum: int = 1, drop_last: bool = False, epoch: int = 1,
    last_epoch: int = 0,
) -> DistributedEpochPlan:
    """Plan one epoch (1-based `epoch`, or the identical epochs `epoch` .. `last_epoch`) over
    `world_size` ranks. Raises `PlanError` like `rank_samples` and `plan.plan_epoch`, and when
    drop_last leaves the ranks no batch although there are samples."""
    per_rank, padded = rank_samples(samples, world_size, drop_last)
    if samples and iterations_per_epoch(per_rank, batch_size, drop_last) == 0:
        raise PlanError(
            f"drop_last leaves each of the {world_size} ranks {per_rank} of the {samples} samples, fewer than "
            f"the batch size {batch_size}: no batches would run" + (f" (epoch {epoch})" if epoch > 1 else "")
        )
    rank = plan_epoch(epoch, per_rank, batch_size, accum, drop_last, world_size, last_epoch)
    return DistributedEpochPlan(world_size, samples, per_rank, padded, rank)


def plan_distributed_run(
    samples: int,
    world_size: int,
    batch_size: int,
    accum: int = 1,
    epochs: int = 1,
    drop_last: bool = False,
    batch_growth: float = 1.0,
    max_batch_size: Optional[int] = None,
) -> DistributedRunPlan:
    """Plan a whole run over `world_size` ranks under the batch-size schedule, one
    `DistributedEpochPlan` per run of identical epochs; what `trainmon plan --world-size W` prints.

    Costs one step per distinct batch size, whatever `epochs` is. Raises `PlanError` (one line) for
    what `plan.plan_run` refuses, an unknown length (`None`), a world size < 1, or drop_last
    leaving the ranks no batch.
    """
    check_whole("epochs", epochs, 0)
    check_positive("accumulation steps", accum)
    per_rank, padded = rank_samples(samples, world_size, drop_last)
    schedule = BatchSizeSchedule(batch_size, batch_growth, max_batch_size)
    segments = [plan_distributed_epoch(samples, world_size, b, accum, drop_last, t + 1, last_epoch=t + count)
                for t, count, b in schedule.segments(0, epochs)]
    return DistributedRunPlan(samples, world_size, drop_last, per_rank, padded, segments)
