"""The line of loss figures under the chart: each a label with its value, wrapped whole.

"best" is the best epoch, not the best single iteration (one lucky batch is noise): the lowest validation
loss and its epoch, or, for a run without validation, the lowest epoch train loss and its epoch; an epoch with
a non-finite train loss is never the best.
"""

from __future__ import annotations

import math
from typing import Optional

from trainmon.engine.core.format import SCREEN, metric
from trainmon.engine.core.messages import EpochEnded, Snapshot


def _finite(value: Optional[float]) -> bool:
    return value is not None and math.isfinite(value)


class EpochBest:
    """The best epoch seen in `EpochEnded` events: `(loss, epoch)` by validation loss, and by train loss."""

    def __init__(self) -> None:
        self.val: Optional[tuple[float, int]] = None
        self.train: Optional[tuple[float, int]] = None

    def take(self, event: EpochEnded) -> None:
        """An epoch with a NaN or Inf train loss is never the best: its mean is of its finite losses only, and its
        weights may be NaN (its validation too, then)."""
        if event.nonfinite:
            return
        if _finite(event.val_loss) and (self.val is None or event.val_loss < self.val[0]):
            self.val = (event.val_loss, event.epoch)
        if _finite(event.train_loss) and (self.train is None or event.train_loss < self.train[0]):
            self.train = (event.train_loss, event.epoch)

    def group(self, s: Snapshot) -> str:
        """`best val 0.1634 (ep 3)`, `best epoch 0.2210 (ep 4)`; `best val 0.1634` when the epoch is not known
        (its events were not seen); "" before any epoch ended."""
        if self.val is not None:
            return f"best val {metric(self.val[0], SCREEN)} (ep {self.val[1]})"
        if _finite(s.best_val_loss):
            return f"best val {metric(s.best_val_loss, SCREEN)}"
        if self.train is not None:
            return f"best epoch {metric(self.train[0], SCREEN)} (ep {self.train[1]})"
        return ""


def value_groups(s: Snapshot, best: EpochBest) -> list[str]:
    """`loss 0.4127` · `window 0.4391` · `epoch 0.5012` · `val 0.6120` · `val acc 0.8611` · `best val …`."""
    loss = f"loss {metric(s.loss, SCREEN)}"
    if s.world_size > 1:  # a distributed run's loss
        loss += f" (mean over {s.world_size} ranks)"
    groups = [loss, f"window {metric(s.window_loss, SCREEN)}", f"epoch {metric(s.epoch_loss, SCREEN)}"]
    if s.val_loss is not None:
        groups.append(f"val {metric(s.val_loss, SCREEN)}")
        groups += [f"val {name} {metric(value, SCREEN)}" for name, value in s.val_metrics.items()]
    groups.append(best.group(s))
    return groups
