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


def _first(dataset: Any, batch_size: int, collate_fn: Any) -> Any:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    try:
        return next(iter(loader))
    except StopIteration:
        raise JobError("the training dataset is empty") from None
    except Exception as exc:  # noqa: BLE001 - the user's dataset or collate_fn failed
        at = where(exc)
        raise JobError(f"{at + ': ' if at else ''}loading the first batch raised {one_line(exc)}") from None


def preflight(job: Job, config: RunConfig) -> None:
    """Raise `JobError` (one line) if `job` cannot train: wrong types, an empty dataset, a first batch
    that is not an `(inputs, targets)` pair, a model or loss that fails on it (the shapes that met
    are named), or a loss that is not a scalar."""
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
    batch = _first(job.train_dataset, min(config.batch_size, m) if m else config.batch_size, job.collate_fn)
    if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
        raise JobError(f"each batch must be an (inputs, targets) pair; the first batch is {describe(batch)}")
    try:
        batch_samples(batch)
    except TypeError as exc:
        raise JobError(str(exc)) from None
    inputs, targets = batch
    was_training = job.model.training
    job.model.eval()
    try:
        with torch.no_grad():
            try:
                outputs = call_model(job.model, inputs)
            except Exception as exc:  # noqa: BLE001
                at = where(exc)
                raise JobError(f"first batch: the model failed on inputs {describe(inputs)}"
                               f"{' at ' + at if at else ''}: {one_line(exc)}") from None
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    loss = job.loss_fn(outputs, targets)
            except Exception as exc:  # noqa: BLE001
                raise JobError(f"first batch: the loss failed on model output {describe(outputs)} and targets "
                               f"{describe(targets)}: {one_line(exc)}") from None
            for w in caught:  # e.g. mse_loss silently broadcasting (32, 3) against (32, 1)
                text = str(w.message)
                if "size" in text and "broadcast" in text:
                    raise JobError(f"first batch: model output {describe(outputs)} and targets {describe(targets)} "
                                   f"do not match; the loss would broadcast them: {text.splitlines()[0]}")
    finally:
        job.model.train(was_training)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise JobError(f"the loss must be one number (the batch mean), got {describe(loss)} from model output "
                       f"{describe(outputs)} and targets {describe(targets)}")
