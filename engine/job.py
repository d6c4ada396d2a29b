"""The Job: what to train (model, data, loss, optimizer) and its defaults, plus a run's settings."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn

from .arithmetic import BatchSizeSchedule, PlanError, check_positive


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
      (unknown length: totals are `None`). Items are `(inputs, targets)` pairs.
    - `loss_fn(outputs, targets)`: the *mean* loss over the batch, a 0-d tensor.
    - `optimizer(params, lr)`: returns a `torch.optim.Optimizer`.
    - `lr_scheduler(optimizer)`: optional; stepped once per epoch, after validation.
    - `metrics`: name -> `fn(outputs, targets)` giving the batch mean (e.g. `accuracy`), averaged
      over validation samples; reported as `val_<name>`.
    - `batch_count(batch)`: optional count that weights a micro-batch (e.g. tokens); defaults to the
      first dimension of the targets, i.e. samples.
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


@dataclass(frozen=True)
class RunConfig:
    """A run's settings: the job's defaults overridden by the user's options.

    `device` is "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N". `epochs` may be 0.
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
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise PlanError(f"unknown run option(s): {', '.join(sorted(unknown))}")
        config = replace(base, **{k: v for k, v in overrides.items() if v is not None})
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `PlanError` with one line for any value out of range."""
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise PlanError(f"epochs must be a whole number >= 0, got {self.epochs!r}")
        check_positive("batch size", self.batch_size)
        check_positive("accumulation steps", self.accum)
        if not (self.lr > 0):
            raise PlanError(f"learning rate must be > 0, got {self.lr!r}")
        if self.num_workers < 0:
            raise PlanError(f"num_workers must be >= 0, got {self.num_workers}")
        BatchSizeSchedule(self.batch_size, self.batch_growth, self.max_batch_size)

    def schedule(self) -> BatchSizeSchedule:
        return BatchSizeSchedule(self.batch_size, self.batch_growth, self.max_batch_size)


def resolve_device(name: str) -> torch.device:
    """"auto" → CUDA when `torch.cuda.is_available()`, else CPU. Raises `PlanError` for an unknown
    or unavailable device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise PlanError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PlanError(f"device {name!r} asked for but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PlanError(f"device {name!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    elif device.type != "cpu" and device.type != "mps":
        raise PlanError(f"unsupported device {name!r} (use auto, cpu, cuda or cuda:N)")
    return device


def dataset_length(dataset: Any) -> Optional[int]:
    """`len(dataset)` or `None` for a dataset without a usable length (e.g. an `IterableDataset`)."""
    if isinstance(dataset, torch.utils.data.IterableDataset):
        return None
    try:
        return len(dataset)
    except TypeError:
        return None
