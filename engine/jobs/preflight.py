"""Checks a job before training starts, so a broken job costs one clear line instead of a traceback.

One batch goes through the model and the loss on the CPU, in eval mode, without gradients, so the
weights and any running statistics are untouched.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional

import torch
from torch import nn

from trainmon.engine.core.format import general
from trainmon.engine.jobs.batches import batch_samples, call_model, count_mismatch, location
from trainmon.engine.jobs.job import Job, RunConfig, dataset_length
from trainmon.engine.jobs.loader import JobError, one_line, where


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


def loss_shape_error(job: Job, outputs: Any, targets: Any, loss: Any, at: str) -> Optional[str]:
    """One line when `loss` is not one number, naming where (`at`: "first training batch",
    "iteration 7 (epoch 2)") and the user's loss function; `None` when it is one number."""
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return None
    defined = location(job.loss_fn)
    return (f"{at}: the loss must be one number (the batch mean), got {describe(loss)} from model output "
            f"{describe(outputs)} and targets {describe(targets)}" + (f" (Job.loss_fn at {defined})" if defined else ""))


def _per_sample_mean_differs(job: Job, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor,
                             rows: int = 8) -> Optional[tuple[float, float]]:
    """Is the loss of the first `rows` samples the mean of their one-sample losses? `None` when it is
    (an element-wise loss on matching rows), else `(batch loss, mean of per-sample losses)`; `(nan,
    nan)` when the loss cannot be taken one sample at a time."""
    k = min(rows, outputs.shape[0], targets.shape[0])
    try:
        whole = float(job.loss_fn(outputs[:k], targets[:k]))
        single = [float(job.loss_fn(outputs[i:i + 1], targets[i:i + 1])) for i in range(k)]
    except Exception:  # noqa: BLE001 - a loss that needs the whole batch: no verdict
        return math.nan, math.nan
    mean = sum(single) / k
    if math.isclose(whole, mean, rel_tol=1e-4, abs_tol=1e-6):
        return None
    return whole, mean


def _check_batch(job: Job, batch: Any, which: str) -> tuple[Any, Any, list[str]]:
    """Model and loss on one batch: returns (outputs, targets, warnings) or raises `JobError`.

    Refuses only what is certainly wrong (the loss or model raising, a loss that is not one number,
    torch itself warning that the loss broadcast the shapes); a doubt is a warning that says what
    was checked.
    """
    if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
        raise JobError(f"each {which} batch must be an (inputs, targets) pair; the first one is {describe(batch)}")
    try:
        batch_samples(batch)
    except TypeError as exc:
        raise JobError(str(exc)) from None
    warned: list[str] = []
    mismatch = count_mismatch(batch) if job.batch_count is None else None
    if mismatch is not None:
        warned.append(f"first {which} batch: {mismatch}")
    inputs, targets = batch
    try:
        outputs = call_model(job.model, inputs)
    except Exception as exc:  # noqa: BLE001 - the user's job may raise anything: one line, no traceback
        at = where(exc)
        raise JobError(f"first {which} batch: the model failed on inputs {describe(inputs)}"
                       f"{' at ' + at if at else ''}: {one_line(exc)}") from None
    broadcast = None
    if (isinstance(outputs, torch.Tensor) and isinstance(targets, torch.Tensor) and outputs.is_floating_point()
            and targets.is_floating_point() and outputs.shape != targets.shape):
        try:
            broadcast = torch.broadcast_shapes(outputs.shape, targets.shape)
        except RuntimeError:
            broadcast = None
        if broadcast == outputs.shape:
            broadcast = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss = job.loss_fn(outputs, targets)
    except Exception as exc:  # noqa: BLE001 - the user's job may raise anything: one line, no traceback
        raise JobError(f"first {which} batch: the loss failed on model output {describe(outputs)} and targets "
                       f"{describe(targets)}: {one_line(exc)}") from None
    for w in caught:  # e.g. mse_loss itself saying it broadcast (32, 3) against (32, 1)
        text = str(w.message)
        if "size" in text and "broadcast" in text:
            shape = f" would broadcast to {tuple(broadcast)} and" if broadcast is not None else ""
            raise JobError(f"first {which} batch: model output {describe(outputs)} and targets {describe(targets)}"
                           f"{shape} do not match; the loss would broadcast them: {text.splitlines()[0]}")
    error = loss_shape_error(job, outputs, targets, loss, f"first {which} batch")
    if error is not None:
        raise JobError(error)
    if broadcast is not None:  # the loss may reshape them itself (a squeeze): look before warning
        differs = _per_sample_mean_differs(job, outputs, targets, loss)
        if differs is not None:
            whole, mean = differs
            found = ("the loss cannot be taken one sample at a time to tell" if math.isnan(whole) else
                     f"the loss of the first rows ({general(whole)}) is not the mean of their one-sample losses "
                     f"({general(mean)})")
            warned.append(f"first {which} batch: model output {describe(outputs)} and targets {describe(targets)} "
                          f"would broadcast to {tuple(broadcast)} in an element-wise loss, and {found}: training goes "
                          f"on; make the shapes match if the loss does not reshape them itself")
    return outputs, targets, warned


def _check_metrics(job: Job, outputs: Any, targets: Any) -> None:
    if not isinstance(job.metrics, dict):
        raise JobError(f"Job.metrics must be a dict of name -> fn(outputs, targets), got {type(job.metrics).__name__}")
    for name, fn in job.metrics.items():
        try:
            value = fn(outputs, targets)
            number = torch.as_tensor(value, dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001 - the user's job may raise anything: one line, no traceback
            raise JobError(f"metric {name!r} failed on the first validation batch: {one_line(exc)}") from None
        if number.numel() != 1:
            raise JobError(f"metric {name!r} must return one number (the batch mean), got {describe(number)}")


def _check_optimizer(job: Job, config: RunConfig) -> None:
    params = [p for p in job.model.parameters() if p.requires_grad]
    if not params:
        raise JobError("the model has no trainable parameters (none requires grad)")
    try:
        optimizer = job.optimizer(job.model.parameters(), config.lr)
    except Exception as exc:  # noqa: BLE001 - the user's job may raise anything: one line, no traceback
        raise JobError(f"Job.optimizer(params, lr) raised {one_line(exc)} (it is called with both, by position)") from None
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise JobError(f"Job.optimizer(params, lr) must return a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if job.lr_scheduler is not None:
        try:
            scheduler = job.lr_scheduler(optimizer)
        except Exception as exc:  # noqa: BLE001 - the user's job may raise anything: one line, no traceback
            raise JobError(f"Job.lr_scheduler(optimizer) raised {one_line(exc)}") from None
        if not callable(getattr(scheduler, "step", None)):
            raise JobError(f"Job.lr_scheduler(optimizer) must return a scheduler with step(), got "
                           f"{type(scheduler).__name__}")
        if job.lr_scheduler_interval not in ("epoch", "step"):
            raise JobError(f"Job.lr_scheduler_interval must be \"epoch\" or \"step\", got "
                           f"{job.lr_scheduler_interval!r}")
        if job.lr_scheduler_interval == "step" and isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise JobError("ReduceLROnPlateau watches an epoch's loss: give it lr_scheduler_interval=\"epoch\"")


def is_one_shot_risk(dataset: Any) -> bool:
    """True for an `IterableDataset`: drawing a batch ahead of training could take data that never
    comes back (a stream, a generator), so its first batch is checked by the loop when it trains on it."""
    return isinstance(dataset, torch.utils.data.IterableDataset)


def preflight(job: Job, config: RunConfig) -> list[str]:
    """Raise `JobError` (one line) if `job` cannot train; returns warnings (one line each) about what
    looked doubtful but may be right.

    Checks: types of the job's fields; an empty dataset; the optimizer and scheduler factories; the
    first training batch and the first validation batch (an `(inputs, targets)` pair, a model and a
    loss that run on it, a scalar loss, shapes the loss broadcasts); every metric on the first
    validation batch. A map-style dataset gives its first batch; an `IterableDataset` is never drawn
    from here (that would consume training data): the loop runs `check_first_batch` on the first
    batch it trains or validates on instead.
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
    warned: list[str] = []
    outputs = targets = None
    was_training = job.model.training
    job.model.eval()
    try:
        with torch.no_grad():
            if not is_one_shot_risk(job.train_dataset):
                batch = _first(job.train_dataset, min(config.batch_size, m) if m else config.batch_size,
                               job.collate_fn)
                outputs, targets, found = _check_batch(job, batch, "training")
                warned += found
            if job.val_dataset is not None:
                outputs = targets = None
                if not is_one_shot_risk(job.val_dataset):
                    # never more than a training batch: the check must not need more memory than training
                    val_batch = _first(job.val_dataset, min(config.val_batch_size or config.batch_size,
                                                            config.batch_size), job.collate_fn, "validation")
                    outputs, targets, found = _check_batch(job, val_batch, "validation")
                    warned += found
            if outputs is not None:
                _check_metrics(job, outputs, targets)
    finally:
        job.model.train(was_training)
    return warned


def check_first_batch(job: Job, batch: Any, which: str) -> list[str]:
    """`preflight`'s checks on the first `which` ("training" or "validation") batch of an
    `IterableDataset`, drawn by the loop itself: eval mode, no gradients. Returns warnings; raises
    `JobError` (one line) for a job that cannot train."""
    was_training = job.model.training
    job.model.eval()
    try:
        with torch.no_grad():
            outputs, targets, warned = _check_batch(job, batch, which)
            if which == "validation" or job.val_dataset is None:
                _check_metrics(job, outputs, targets)
    finally:
        job.model.train(was_training)
    return warned
