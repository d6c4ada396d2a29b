"""The loss the model returned, for frameworks that hide a NaN from their callbacks.

The Hugging Face Trainer's `logging_nan_inf_filter` (on by default) logs the running mean in place of a
NaN or Inf loss, so a callback reading `logs["loss"]` sees a diverged run as a healthy one. `RawLosses`
keeps each training forward pass's `loss` output as a device tensor (a forward hook: no sync) and reads
them, in one transfer, when the run core publishes (at most 10 a second, as it reads every loss). The
non-finite ones enter the run's losses at their own global iterations: counted, flagged, the `nan`
alert raised; the framework's logged figure for a span that held one is then left out, never shown as
a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Optional

import torch


def model_loss(output: Any) -> Optional[torch.Tensor]:
    """The `loss` of a model's forward output (a `ModelOutput`/mapping with `loss`, or an object with a
    `loss` attribute), detached, as one number (a `(n_gpu,)` DataParallel loss summed: only its
    finiteness matters here); `None` when the output carries no loss tensor."""
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    if not isinstance(loss, torch.Tensor) or not loss.numel():
        return None
    loss = loss.detach()
    return loss if loss.dim() == 0 else loss.sum()  # shape only: no sync


class RawLosses:
    """Each training forward's loss, kept unread (`see`), checked for NaN/Inf at publication (`read`).

    `global_iteration()`: the 1-based global iteration of the micro-batch in progress. `hook(model)`
    registers the forward hook; `remove()` takes it off."""

    def __init__(self, global_iteration: Callable[[], int]) -> None:
        self.global_iteration = global_iteration
        self._unread: list[torch.Tensor] = []
        self._iterations: list[int] = []
        self.span_nonfinite = False  # a non-finite loss since `take_span()`
        self._handle: Any = None

    def hook(self, model: Any) -> "RawLosses":
        if hasattr(model, "register_forward_hook"):
            self._handle = model.register_forward_hook(self.see)
        return self

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def see(self, module: Any, args: Any, output: Any) -> None:
        """Forward hook: keep a training forward's loss (evaluation forwards are left alone)."""
        if not getattr(module, "training", False):
            return
        loss = model_loss(output)
        if loss is not None:
            self._unread.append(loss)
            self._iterations.append(self.global_iteration())

    def read(self) -> list[tuple[int, float]]:
        """The non-finite losses since the last read, as `(global_iteration, value)`, read in one transfer
        (a device sync: call it where the losses are read anyway, at publication)."""
        if not self._unread:
            return []
        values = torch.stack(self._unread).float().tolist()
        iterations, self._unread, self._iterations = self._iterations, [], []
        bad = [(i, v) for i, v in zip(iterations, values) if not math.isfinite(v)]
        if bad:
            self.span_nonfinite = True
        return bad

    def feed(self, losses: Any) -> None:
        """`read`, and record each non-finite loss into `losses` (a `LossTracker`) at its own global iteration,
        where the run core's next read counts it, flags it and raises the `nan` alert."""
        for global_iteration, value in self.read():
            losses.record(torch.tensor(value), global_iteration, 0.0)

    def take_span(self) -> bool:
        """Whether a loss read since the last call was non-finite (then the framework's own figure for that
        span is a filtered one: leave it out)."""
        nonfinite, self.span_nonfinite = self.span_nonfinite, False
        return nonfinite

    def attach(self, core: Any) -> "RawLosses":
        """Read at each of `core`'s (a `RunCore`) publications, after its loop kind's own `before_publish`."""
        before = core.before_publish

        def before_publish() -> None:
            if before is not None:
                before()
            self.feed(core.losses)

        core.before_publish = before_publish
        return self
