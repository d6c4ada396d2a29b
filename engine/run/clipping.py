"""Gradient clipping once per accumulation window, and the pre-clip norms it saw.

Clipping each micro-batch's gradient is the known mistake: only the window's accumulated gradient
is the step's gradient, so that is what `clip_grad_norm_` sees (after any rescaling of the window).
The norm is a device tensor; it is read with the losses, at publication, never per iteration.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch


class GradClipper:
    """`clip(parameters)` at each optimizer step when `max_norm` is set; `flush()` at publication.

    State (`state_dict`): `last_norm` (the newest step's pre-clip total 2-norm), `clipped` (steps whose
    norm was above `max_norm`) and `steps` (steps measured).
    """

    def __init__(self, max_norm: Optional[float]) -> None:
        self.max_norm = max_norm
        self._unread: list[torch.Tensor] = []
        self.last_norm: Optional[float] = None
        self.clipped = self.steps = 0

    def clip(self, parameters: Any) -> None:
        """Clip the accumulated gradients to `max_norm` (2-norm over all of them); keeps the norm unread."""
        if self.max_norm is None:
            return
        norm = torch.nn.utils.clip_grad_norm_(parameters, self.max_norm)  # no sync: a 0-d device tensor
        self._unread.append(norm.detach())

    def flush(self) -> None:
        """Read the norms since the last publication in one transfer."""
        if not self._unread:
            return
        norms = torch.stack(self._unread).float().tolist()  # one sync, with the losses'
        self._unread = []
        for norm in norms:
            self.steps += 1
            if math.isfinite(norm) and norm > self.max_norm:
                self.clipped += 1
            self.last_norm = norm

    def state_dict(self) -> dict:
        self.flush()
        return {"last_norm": self.last_norm, "clipped": self.clipped, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self._unread = []
        self.last_norm, self.clipped, self.steps = state["last_norm"], state["clipped"], state["steps"]
