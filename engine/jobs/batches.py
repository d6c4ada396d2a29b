"""What a batch is made of: where its tensors go, how many samples it counts, how the model takes it.

One copy of these rules for the loop, the validation pass and the preflight, so a batch counts the
same samples wherever it is looked at.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Optional

import torch


def move_to(batch: Any, device: torch.device) -> Any:
    """Move tensors inside nested tuples, lists and dicts to `device` (non-blocking where possible)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    return batch


def leading_dim(value: Any) -> Optional[int]:
    """The first dimension of the first tensor in `value` (nested tuples, lists, dicts in order);
    1 for a 0-d tensor; `None` when it holds no tensor."""
    if isinstance(value, torch.Tensor):
        return int(value.shape[0]) if value.dim() else 1
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        found = leading_dim(item)
        if found is not None:
            return found
    return None


def batch_samples(batch: Any) -> int:
    """Samples in an `(inputs, targets)` batch: the first dimension of the targets (their first
    tensor), else of the inputs when the targets hold no tensor.

    The targets, not the inputs: sequence models take inputs shaped `(T, B, F)` while their targets
    are `(B, ...)`. A batch that is not a pair counts from its first tensor. Raises `TypeError`
    when the batch holds no tensor at all.
    """
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        count = leading_dim(batch[1])
        if count is None:
            count = leading_dim(batch[0])
    else:
        count = leading_dim(batch)
    if count is None:
        raise TypeError(f"cannot tell how many samples a batch of type {type(batch).__name__} holds")
    return count


def count_mismatch(batch: Any) -> Optional[str]:
    """One line when the inputs' and the targets' first dimensions differ (which one counts, how to
    declare a count); `None` when they agree or either holds no tensor."""
    if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
        return None
    inputs, targets = leading_dim(batch[0]), leading_dim(batch[1])
    if inputs is None or targets is None or inputs == targets:
        return None
    return (f"the inputs' first dimension is {inputs} but the targets' is {targets}: trainmon counts {targets} "
            f"samples per batch, from the targets; set Job.batch_count=lambda batch: ... to count otherwise")


def call_model(model: torch.nn.Module, inputs: Any) -> Any:
    """`model(x)`, `model(*x)` for a tuple or list, `model(**x)` for a dict."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (list, tuple)):
        return model(*inputs)
    return model(inputs)


def location(fn: Any) -> str:
    """`job.py:12 in my_loss` where the user's code defines `fn`; `''` for trainmon's, torch's or
    the standard library's functions and where it cannot be told (a builtin). A callable object is
    placed by its `forward` or `__call__`."""
    from trainmon.engine.jobs.loader import is_user_frame

    target = fn
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(fn, "forward", None) or type(fn).__call__ if callable(fn) else None
    code = getattr(inspect.unwrap(target), "__code__", None) if target is not None else None
    if code is None or not is_user_frame(code.co_filename):
        return ""
    return f"{os.path.basename(code.co_filename)}:{code.co_firstlineno} in {code.co_name}"
