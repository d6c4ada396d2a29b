"""Validation after an epoch: the sample-weighted mean loss and metrics over the validation set."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from trainmon.engine.jobs.batches import batch_samples, call_model, move_to
from trainmon.engine.jobs.loader import JobError
from trainmon.engine.jobs.preflight import loss_shape_error


def validate(job: Any, model: torch.nn.Module, loader: Any, device: torch.device, epoch: int,
             check_first: Callable[[Any], None]) -> tuple[Optional[float], dict]:
    """`(loss, {metric: value})` over every batch of `loader`, each weighted by its samples; `(None, {})`
    when it yields none. One device sync in all. Raises `JobError` (one line naming the batch and
    `epoch`) for a loss or metric that is not one number. `model` is in eval mode already."""
    sums: list[torch.Tensor] = []
    total = 0
    with torch.no_grad():
        for i, batch in enumerate(loader):
            batch = move_to(batch, device)
            check_first(batch)
            inputs, targets = batch
            n = batch_samples(batch)
            outputs = call_model(model, inputs)
            at = f"validation batch {i + 1} after epoch {epoch}"
            loss = job.loss_fn(outputs, targets)
            error = loss_shape_error(job, outputs, targets, loss, at)
            if error is not None:
                raise JobError(error)
            row = [loss.detach().float().reshape(()) * n]
            for name, fn in job.metrics.items():
                value = torch.as_tensor(fn(outputs, targets), dtype=torch.float32, device=device)
                if value.numel() != 1:
                    raise JobError(f"{at}: metric {name!r} must return one number (the batch mean), got "
                                   f"{tuple(value.shape)}")
                row.append(value.reshape(()) * n)
            sums.append(torch.stack(row))
            total += n
    if not total:
        return None, {}
    values = (torch.stack(sums).sum(0) / total).tolist()  # one sync per validation
    return values[0], {name: v for name, v in zip(job.metrics, values[1:])}
