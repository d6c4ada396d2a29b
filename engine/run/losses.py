"""Loss bookkeeping: device losses kept unread until a publication, then the true (sample-weighted) means.

Reading a loss is a device sync (`.tolist()`), so every loss since the last publication is read in
one transfer. NaN and Inf are counted and flagged, never folded into a mean (DESIGN.md).
"""

from __future__ import annotations

import math
import operator
from typing import Optional

import torch

from trainmon.engine.core.history import History


class LossTracker:
    """Training losses as read: last, window and epoch means (weighted by samples or a job's counts),
    best, non-finite counts; and the validation results.

    Losses are `record`ed as 0-d device tensors and read by `flush()` into `history` and the means.

    State (`state_dict`, only once flushed: unread device values are no plain data): `last`,
    `window_loss`, `best`, `nonfinite`, `epoch_nonfinite`, `epoch_losses`, `last_nonfinite` (a global iteration),
    the running sums `window_sums` / `epoch_sums` (`[sum of loss · weight, sum of weight]`),
    `val_loss`, `val_metrics` (name → value) and `best_val_loss`. `history` is a unit of its own.
    """

    def __init__(self, history: History) -> None:
        self.history = history
        self._unread: list[torch.Tensor] = []
        self._floats_unread = False  # `_unread` holds numbers too (`_add_each`), not only tensors
        self._unread_meta: list[list] = []  # [global_iteration, weight, closes_window]
        self.last: Optional[float] = None
        self.window_loss: Optional[float] = None
        self.best: Optional[float] = None
        self.nonfinite = self.epoch_nonfinite = 0
        self.epoch_losses = 0  # this epoch's losses read, finite or not (`epoch_nonfinite` of them were not)
        self.last_nonfinite: Optional[int] = None
        self._win_num = self._win_den = 0.0
        self._epoch_num = self._epoch_den = 0.0
        self.val_loss: Optional[float] = None
        self.val_metrics: dict = {}
        self.epoch_validated = False  # this epoch recorded a validation
        self.best_val_loss: Optional[float] = None

    def record(self, loss: torch.Tensor, global_iteration: int, weight: float) -> None:
        """Keep iteration `global_iteration`'s (1-based) detached loss, unread, with its weight."""
        self._unread.append(loss)
        self._unread_meta.append([global_iteration, weight, False])

    def close_window(self) -> None:
        """The last recorded loss closed an accumulation window (its mean becomes `window_loss` when read)."""
        if self._unread_meta:
            self._unread_meta[-1][2] = True

    def flush(self) -> list[tuple[int, float]]:
        """Read every unread loss in one transfer; returns the non-finite ones as `(global_iteration, value)`."""
        if not self._unread:
            return []
        unread = self._unread
        if not self._floats_unread:  # the engine's case: every one a tensor
            values = torch.stack(unread).float().tolist()  # the only per-publish device sync
        else:  # a hot loop's span with gaps brought numbers read already (`_add_each`)
            tensors = [v for v in unread if not isinstance(v, float)]
            it = iter(torch.stack(tensors).float().tolist() if tensors else [])
            values = [v if isinstance(v, float) else next(it) for v in unread]
        meta, self._unread, self._unread_meta = self._unread_meta, [], []
        self._floats_unread = False
        self.epoch_losses += len(values)
        flagged = []
        for value, (global_iteration, weight, closes) in zip(values, meta):
            self.history.append(global_iteration, value)
            self.last = value  # the newest loss, NaN and Inf too: a stale finite one would hide a divergence
            if math.isfinite(value):
                self._epoch_num += value * weight
                self._epoch_den += weight
                self._win_num += value * weight
                self._win_den += weight
                if self.best is None or value < self.best:
                    self.best = value
            else:
                self.nonfinite += 1
                self.epoch_nonfinite += 1
                self.last_nonfinite = global_iteration
                flagged.append((global_iteration, value))
            if closes:
                self.window_loss = self._win_num / self._win_den if self._win_den else None
                self._win_num = self._win_den = 0.0
        return flagged

    def add_span(self, values: list, weights: list, first: int, closes: list[int]) -> list[tuple[int, float]]:
        """Losses already read, in bulk: `values[i]` (a float, or `None` where nothing was logged) is global
        iteration `first + i + 1`'s, `weights[i]` its weight; `closes` the 1-based positions in the span
        after which an optimizer step closed the window (0: the window open before the span). Returns the
        non-finite ones as `(global_iteration, value)`. Every value goes into the history, in bulk."""
        try:
            total = sum(values)
        except TypeError:  # a gap (None)
            total = math.nan
        if not math.isfinite(total) or self._unread:  # a gap or a non-finite value: one at a time, as `flush`
            return self._add_each(values, weights, first, closes)
        products = list(map(operator.mul, values, weights))
        num, den = sum(products), sum(weights)
        self.epoch_losses += len(values)
        self._epoch_num += num
        self._epoch_den += den
        self.last = values[-1]
        low = min(values)
        if self.best is None or low < self.best:
            self.best = low
        if closes:
            last = closes[-1]
            earlier = [c for c in closes if c < last]
            if earlier:
                start = earlier[-1]
                wn, wd = sum(products[start:last]), sum(weights[start:last])
            else:
                wn, wd = self._win_num + sum(products[:last]), self._win_den + sum(weights[:last])
            self.window_loss = wn / wd if wd else None
            self._win_num, self._win_den = sum(products[last:]), sum(weights[last:])
        else:
            self._win_num += num
            self._win_den += den
        self._history_span(values, first)
        return []

    def _history_span(self, values: list, first: int) -> None:
        self.history.extend_run(first, values)  # every iteration's loss, exactly (records and export need them)

    def _add_each(self, values: list, weights: list, first: int, closes: list[int]) -> list[tuple[int, float]]:
        ends = set(closes)
        if 0 in ends:  # a step closed the window open before the span
            if self._unread_meta:
                self.close_window()
            elif self._win_den:
                self.window_loss = self._win_num / self._win_den
                self._win_num = self._win_den = 0.0
        for i, (value, weight) in enumerate(zip(values, weights)):
            if value is not None:
                self._unread.append(value)
                self._floats_unread = True
                self._unread_meta.append([first + i + 1, weight, False])
            if i + 1 in ends:
                self.close_window()
        return self.flush()

    def begin_epoch(self) -> None:
        self.epoch_validated = False
        self._epoch_num = self._epoch_den = 0.0
        self.epoch_nonfinite = self.epoch_losses = 0
        self._win_num = self._win_den = 0.0

    @property
    def epoch_loss(self) -> Optional[float]:
        """Sample-weighted mean of this epoch's finite losses read so far; `None` if none was finite."""
        return self._epoch_num / self._epoch_den if self._epoch_den else None

    @property
    def epoch_validation(self) -> tuple[Optional[float], dict]:
        """This epoch's validation `(loss, metrics)`; `(None, {})` for an epoch that ran none (an epoch
        carries only its own figures; `val_loss` keeps the last one for the screen)."""
        return (self.val_loss, dict(self.val_metrics)) if self.epoch_validated else (None, {})

    def record_validation(self, loss: Optional[float], metrics: dict) -> None:
        self.epoch_validated = True
        self.val_loss, self.val_metrics = loss, metrics
        if loss is not None and math.isfinite(loss) and (self.best_val_loss is None or loss < self.best_val_loss):
            self.best_val_loss = loss

    def state_dict(self) -> dict:
        """Raises `RuntimeError` while losses are unread (call `flush()` first)."""
        if self._unread:
            raise RuntimeError(f"{len(self._unread)} losses are unread: flush() before state_dict()")
        return {
            "last": self.last, "window_loss": self.window_loss, "best": self.best, "nonfinite": self.nonfinite,
            "epoch_nonfinite": self.epoch_nonfinite, "epoch_losses": self.epoch_losses,
            "last_nonfinite": self.last_nonfinite,
            "window_sums": [self._win_num, self._win_den], "epoch_sums": [self._epoch_num, self._epoch_den],
            "val_loss": self.val_loss, "val_metrics": dict(self.val_metrics), "best_val_loss": self.best_val_loss,
            "epoch_validated": self.epoch_validated,
        }

    def load_state_dict(self, state: dict) -> None:
        self._unread, self._unread_meta, self._floats_unread = [], [], False
        self.last, self.window_loss, self.best = state["last"], state["window_loss"], state["best"]
        self.nonfinite, self.epoch_nonfinite = state["nonfinite"], state["epoch_nonfinite"]
        self.last_nonfinite = state["last_nonfinite"]
        self.epoch_losses = state.get("epoch_losses", 0)  # older checkpoints: not counted
        self._win_num, self._win_den = state["window_sums"]
        self._epoch_num, self._epoch_den = state["epoch_sums"]
        self.val_loss, self.val_metrics = state["val_loss"], dict(state["val_metrics"])
        self.best_val_loss = state["best_val_loss"]
        self.epoch_validated = state.get("epoch_validated", self.val_loss is not None)  # older checkpoints: by val_loss
