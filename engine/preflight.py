"""Checks a job before training starts, so a broken job costs one clear line instead of a traceback.

One batch goes through the model and the loss on the CPU, in eval mode, without gradients, so the
weights and any running statistics are untouched.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from .job import Job, RunConfig, dataset_length
from .jobs.loader import JobError, one_line, where
from .loop import batch_samples, call_model


def describe(value: Any) -> str:
    """`(32, 10) float32` for a tensor; a compact summary for tuples, lists and dicts of them."""
    if isinstance(value, torch.Tensor):
        return f"{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(describe(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in value.items()) + "}"
    return type(value).__name__


def _first(dataset: Any, batch_size: int, collate_fn: Any, which: str = "training") -> Any:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    try:
        return next(iter(loader))
    except StopIteration:
        raise JobError(f"the {which} dataset is empty") from None
    except Exception as exc:  # noqa: BLE001 - the user's dataset or collate_fn failed
        at = where(exc)
        raise JobError(f"{at + ': ' if at else ''}loading the first {which} batch raised {one_line(exc)}") from None


def _check_batch(job: Job, batch: Any, which: str) -> tuple[Any, Any, Any]:
    """Model and loss on one batch: returns (outputs, targets, loss) or raises `JobError`."""
    if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
        raise JobError(f"each {which} batch must be an (inputs, targets) pair; the first one is {describe(batch)}")
    try:
        batch_samples(batch)
    except TypeError as exc:
        raise JobError(str(exc)) from None
    inputs, targets = batch
    try:
        outputs = call_model(job.model, inputs)
    except Exception as exc:  # noqa: BLE001
        at = where(exc)
        raise JobError(f"first {which} batch: the model failed on inputs {describe(inputs)}"
                       f"{' at ' + at if at else ''}: {one_line(exc)}") from None
    if (isinstance(outputs, torch.Tensor) and isinstance(targets, torch.Tensor) and outputs.is_floating_point()
            and targets.is_floating_point() and outputs.shape != targets.shape):
        try:
            broadcast = torch.broadcast_shapes(outputs.shape, targets.shape)
        except RuntimeError:
            broadcast = None
        if broadcast is not None and broadcast != outputs.shape:
            raise JobError(f"first {which} batch: model output {describe(outputs)} and targets {describe(targets)} "
                           f"would broadcast to {tuple(broadcast)} in an element-wise loss; make the shapes match")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss = job.loss_fn(outputs, targets)
    except Exception as exc:  # noqa: BLE001
        raise JobError(f"first {which} batch: the loss failed on model output {describe(outputs)} and targets "
                       f"{describe(targets)}: {one_line(exc)}") from None
    for w in caught:  # e.g. mse_loss silently broadcasting (32, 3) against (32, 1)
        text = str(w.message)
        if "size" in text and "broadcast" in text:
            raise JobError(f"first {which} batch: model output {describe(outputs)} and targets {describe(targets)} "
                           f"do not match; the loss would broadcast them: {text.splitlines()[0]}")
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise JobError(f"the loss must be one number (the batch mean), got {describe(loss)} from model output "
                       f"{describe(outputs)} and targets {describe(targets)}")
    return outputs, targets, loss


def _check_metrics(job: Job, outputs: Any, targets: Any) -> None:
    if not isinstance(job.metrics, dict):
        raise JobError(f"Job.metrics must be a dict of name -> fn(outputs, targets), got {type(job.metrics).__name__}")
    for name, fn in job.metrics.items():
        try:
            value = fn(outputs, targets)
            number = torch.as_tensor(value, dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001
            raise JobError(f"metric {name!r} failed on the first validation batch: {one_line(exc)}") from None
        if number.numel() != 1:
            raise JobError(f"metric {name!r} must return one number (the batch mean), got {describe(number)}")


def _check_optimizer(job: Job, config: RunConfig) -> None:
    params = [p for p in job.model.parameters() if p.requires_grad]
    if not params:
        raise JobError("the model has no trainable parameters (none requires grad)")
    try:
        optimizer = job.optimizer(job.model.parameters(), config.lr)
    except Exception as exc:  # noqa: BLE001
        raise JobError(f"Job.optimizer(params, lr) raised {one_line(exc)} (it is called with both, by position)") from None
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise JobError(f"Job.optimizer(params, lr) must return a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if job.lr_scheduler is not None:
        try:
            scheduler = job.lr_scheduler(optimizer)
        except Exception as exc:  # noqa: BLE001
            raise JobError(f"Job.lr_scheduler(optimizer) raised {one_line(exc)}") from None
        if not callable(getattr(scheduler, "step", None)):
            raise JobError(f"Job.lr_scheduler(optimizer) must return a scheduler with step(), got "
                           f"{type(scheduler).__name__}")


def preflight(job: Job, config: RunConfig) -> None:
    """Raise `JobError` (one line) if `job` cannot train.

    Checks: types of the job's fields; an empty dataset; the optimizer and scheduler factories; the
    first training batch and the first validation batch (an `(inputs, targets)` pair, a model and a
    loss that run on it, output and target shapes that do not silently broadcast, a scalar loss);
    every metric on the first validation batch. One batch of each dataset is drawn (an
    `IterableDataset` must be re-iterable, as every epoch needs anyway).
    """
    if not isinstance(job.model, nn.Module):
        raise JobError(f"Job.model must be a torch.nn.Module, got {type(job.model).__name__}")
    for field in ("loss_fn", "optimizer"):
        if not callable(getattr(job, field)):
            raise JobError(f"Job.{field} must be callable, got {type(getattr(job, field)).__name__}")
    if job.train_dataset is None:
        raise JobError("Job.train_dataset is None")
    m = dataset_length(job.train_dataset)
    if m == 0:
        raise JobError("the training dataset is empty")
    if job.val_dataset is not None and dataset_length(job.val_dataset) == 0:
        raise JobError("the validation dataset is empty (use val_dataset=None for none)")
    _check_optimizer(job, config)
    was_training = job.model.training
    job.model.eval()
    try:
        with torch.no_grad():
            batch = _first(job.train_dataset, min(config.batch_size, m) if m else config.batch_size, job.collate_fn)
            outputs, targets, _ = _check_batch(job, batch, "training")
            if job.val_dataset is not None:
                val_batch = _first(job.val_dataset, 256, job.collate_fn, "validation")
                outputs, targets, _ = _check_batch(job, val_batch, "validation")
            _check_metrics(job, outputs, targets)
    finally:
        job.model.train(was_training)
