"""The Job: what to train (model, data, loss, optimizer) and its defaults, plus a run's settings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn

from trainmon.engine.core.arithmetic import (
    BatchSizeSchedule,
    PlanError,
    check_batch_size,
    check_positive,
    check_whole,
    is_whole,
)
from trainmon.engine.core.plan import RunPlan, plan_run

MAX_SEED = 2**63 - 1
PRECISIONS = ("fp32", "bf16", "fp16")  # seeds run from 0 to this (torch.manual_seed takes 64 bits)


def sgd(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Default optimizer factory: SGD with momentum 0.9."""
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows of `outputs` `(B, C)` whose argmax equals `targets` `(B,)`; a 0-d tensor."""
    return (outputs.argmax(dim=1) == targets).float().mean()


@dataclass
class Job:
    """A training job: model, data, loss, optimizer factory and defaults.

    - `model`: an `nn.Module`; called as `model(inputs)` (or `model(*inputs)` for a tuple,
      `model(**inputs)` for a dict) on batches from the loader.
    - `train_dataset` / `val_dataset`: map-style datasets (with `__len__`) or `IterableDataset`s
      (with `__len__` their length is used; without it totals are `None`). Items are
      `(inputs, targets)` pairs. An `IterableDataset` must give a fresh iterator each epoch.
    - `loss_fn(outputs, targets)`: the *mean* loss over the batch, a 0-d tensor.
    - `optimizer(params, lr)`: returns a `torch.optim.Optimizer`.
    - `lr_scheduler(optimizer)`: optional; stepped once per epoch, after validation, or with
      `lr_scheduler_interval="step"` once per optimizer step (never per micro-batch): a warm-up of
      10 steps then reaches the full rate after 10 optimizer steps. `ReduceLROnPlateau` needs "epoch".
    - `metrics`: name -> `fn(outputs, targets)` giving the batch mean (e.g. `accuracy`), averaged
      over validation samples; reported as `val_<name>`.
    - `batch_count(batch)`: optional count that weights a micro-batch (e.g. tokens). Without it a
      batch counts as many samples as the first dimension of its targets (of the first tensor among
      them when the targets are a tuple or dict; of the inputs only when the targets hold no
      tensor). Samples seen, the totals and the accumulation weights all use that count. Inputs
      shaped `(T, B, F)` (sequence first) are fine: the targets' `B` is used, and a warning says so
      when the two first dimensions differ.
    - `count_unit="tokens"`: `batch_count` counts tokens; tokens/s is shown beside samples/s.
      `flops_per_sample` / `flops_per_token`: the training FLOPs (forward and backward; about 6 ×
      parameters per token for a transformer) of one sample / token, for MFU against the device's
      peak (engine/core/throughput.py, engine/core/peak_flops.py).
    - defaults: `epochs`, `batch_size`, `accum` (accumulation steps), `drop_last`, `num_workers`,
      `lr`, `batch_growth`, `max_batch_size`.
    """

    name: str
    model: nn.Module
    train_dataset: Any
    loss_fn: Callable[[Any, Any], torch.Tensor]
    optimizer: Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer] = sgd
    val_dataset: Any = None
    metrics: dict[str, Callable[[Any, Any], torch.Tensor]] = field(default_factory=dict)
    lr_scheduler: Optional[Callable[[torch.optim.Optimizer], Any]] = None
    lr_scheduler_interval: str = "epoch"  # "epoch" or "step" (once per optimizer step)
    collate_fn: Optional[Callable] = None
    batch_count: Optional[Callable[[Any], int]] = None
    epochs: int = 5
    batch_size: int = 32
    accum: int = 1
    drop_last: bool = False
    num_workers: int = 0
    lr: float = 0.01
    batch_growth: float = 1.0
    max_batch_size: Optional[int] = None
    shuffle: bool = True
    description: str = ""
    val_batch_size: Optional[int] = None  # samples per validation batch; None: the training batch size
    clip_grad_norm: Optional[float] = None  # clip each window's accumulated gradient to this 2-norm
    count_unit: str = "samples"  # "tokens": batch_count counts tokens, shown as tokens/s (engine/core/throughput.py)
    flops_per_sample: Optional[float] = None  # training FLOPs (forward + backward) of one sample: MFU
    flops_per_token: Optional[float] = None  # ... or of one token (with count_unit="tokens"): MFU


@dataclass(frozen=True)
class RunConfig:
    """A run's settings: the job's defaults overridden by the user's options.

    `device` is "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:N" or "mps" (see
    `resolve_device`). `epochs` may be 0.
    """

    epochs: int = 5
    batch_size: int = 32
    accum: int = 1
    lr: float = 0.01
    drop_last: bool = False
    seed: int = 0
    device: str = "auto"
    batch_growth: float = 1.0
    max_batch_size: Optional[int] = None
    num_workers: int = 0
    checkpoints: bool = True  # save checkpoints (where the run has a run directory)
    checkpoint_every: int = 1  # at the end of every N-th epoch; 0: never at epoch ends
    checkpoint_minutes: Optional[float] = None  # also every M minutes, mid-epoch at a safe point
    keep_checkpoints: int = 2  # the newest K stay, plus the best by validation loss
    val_batch_size: Optional[int] = None  # validation batch; None: the job's, else the training batch size
    clip_grad_norm: Optional[float] = None  # max 2-norm of each window's accumulated gradient; None: no clipping
    precision: str = "fp32"  # fp32, bf16 (autocast) or fp16 (autocast and a grad scaler; CUDA)

    @classmethod
    def for_job(cls, job: Job, **overrides: Any) -> "RunConfig":
        """The job's defaults with every non-`None` override applied; validated (raises `PlanError`)."""
        base = cls(
            epochs=job.epochs,
            batch_size=job.batch_size,
            accum=job.accum,
            lr=job.lr,
            drop_last=job.drop_last,
            batch_growth=job.batch_growth,
            max_batch_size=job.max_batch_size,
            num_workers=job.num_workers,
            val_batch_size=job.val_batch_size,
            clip_grad_norm=job.clip_grad_norm,
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise PlanError(f"unknown run option(s): {', '.join(sorted(unknown))}")
        config = replace(base, **{k: v for k, v in overrides.items() if v is not None})
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `PlanError` with one line for any value out of range.

        Checked: epochs >= 0; batch size and max batch size within 1..`MAX_BATCH_SIZE` (2**31 - 1)
        samples, the cap not below the batch size; accum >= 1; lr a finite number > 0; seed within
        0..`MAX_SEED`; num_workers >= 0; checkpoint_every >= 0, keep_checkpoints >= 1 and
        checkpoint_minutes > 0 when given; and a batch-size schedule that stays within
        `MAX_BATCH_SIZE` up to the last epoch (or is capped).
        """
        check_whole("epochs", self.epochs, 0)
        check_batch_size("batch size", self.batch_size)
        check_positive("accumulation steps", self.accum)
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise PlanError(f"learning rate must be > 0 and finite, got {lr!r}")
        check_seed(self.seed)
        check_whole("num_workers", self.num_workers, 0)
        if self.val_batch_size is not None:
            check_batch_size("validation batch size", self.val_batch_size)
        if self.precision not in PRECISIONS:
            raise PlanError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        clip = self.clip_grad_norm
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))
                                 or not math.isfinite(clip) or clip <= 0):
            raise PlanError(f"gradient clipping norm must be > 0 and finite, got {clip!r}")
        check_whole("checkpoint every (epochs)", self.checkpoint_every, 0)
        check_positive("checkpoints to keep", self.keep_checkpoints)
        minutes = self.checkpoint_minutes
        if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float))
                                    or not math.isfinite(minutes) or minutes <= 0):
            raise PlanError(f"checkpoint minutes must be > 0 and finite, got {minutes!r}")
        schedule = BatchSizeSchedule(self.batch_size, self.batch_growth, self.max_batch_size)
        if self.epochs and self.batch_growth > 1:
            schedule.at(self.epochs - 1)  # growing: the last epoch has the largest batch size

    def schedule(self) -> BatchSizeSchedule:
        return BatchSizeSchedule(self.batch_size, self.batch_growth, self.max_batch_size)

    def plan(self, samples: Optional[int]) -> RunPlan:
        """The run's plan for a training set of `samples` (`None`: unknown length): what `trainmon plan`
        prints and what a run checks before training. Raises `PlanError` (one line), e.g. when
        drop_last leaves an epoch no batch. Costs the same for 5 epochs as for 10**8."""
        return plan_run(samples, self.batch_size, self.accum, self.epochs, self.drop_last, self.batch_growth,
                        self.max_batch_size)


def check_seed(seed: int) -> None:
    """Raise `PlanError` unless `seed` is an int from 0 to `MAX_SEED` (2**63 - 1)."""
    if not is_whole(seed, 0) or seed > MAX_SEED:
        raise PlanError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")


def check_precision(precision: str, device: torch.device) -> None:
    """Raise `PlanError` (one line) for a precision `device` cannot train in: fp16 needs CUDA (its grad
    scaler is what makes fp16 training sound there), bf16 a device that supports it."""
    if precision == "fp16" and device.type != "cuda":
        raise PlanError(f"--precision fp16 needs a CUDA device (with its grad scaler); on {device.type} use "
                        f"--precision bf16")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PlanError("--precision bf16: this GPU does not support bfloat16; use fp16")


def resolve_device(name: str) -> torch.device:
    """The torch device for `name`: "auto" (CUDA when `torch.cuda.is_available()`, else CPU), "cpu",
    "cuda", "cuda:N" for an existing GPU N, or "mps" where `torch.backends.mps.is_available()`.

    Raises `PlanError` (one line) for anything else: an unknown name, CUDA or MPS not available
    here, a CUDA index that does not exist, or an index on the CPU.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise PlanError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PlanError(f"device {name!r} asked for but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PlanError(f"device {name!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    elif device.type == "cpu":
        if device.index is not None:
            raise PlanError(f"device {name!r}: the CPU takes no index (use cpu)")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise PlanError(f"device {name!r} asked for but MPS is not available here")
        if device.index not in (None, 0):
            raise PlanError(f"device {name!r} does not exist (use mps)")
    else:
        raise PlanError(f"unsupported device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
    return device


def dataset_length(dataset: Any) -> Optional[int]:
    """`len(dataset)` (samples), or `None` for a dataset without a usable length.

    An `IterableDataset` that defines `__len__` has a length like any other dataset (the DataLoader
    sizes its epochs from it too); one without `__len__`, or whose `__len__` raises `TypeError` or
    `NotImplementedError`, has none.
    """
    try:
        length = len(dataset)
    except (TypeError, NotImplementedError):
        return None
    return length if is_whole(length, 0) else None
