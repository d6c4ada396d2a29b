"""The per-iteration state of a run: plain integers and loss references, folded into the run's units in bulk.

A loop reports an iteration by `n += 1` and its loss by appending a reference (a 0-d tensor, never read
here: no device sync), an optimizer step by appending the iteration count it came after. Everything
else — counters, windows, means, history, speed, the snapshot — happens when the run core folds the span
at a publication (≤ 10 a second), at an epoch's end, or when the loop asks for a figure. `check` is the
one flag the loop tests each iteration: a ticker thread raises it when a publication is due, a viewer's
command raises it at once, and the core keeps it raised while something waits for the next iteration
(a pause, a single step, a stop, a pending accumulation change, a publication at every iteration).

Torch-free: the tensors are only held.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional


class HotPath:
    """What the loop touches per iteration.

    `n`: iterations completed since the last fold. `losses`: what `log` handed over for them, by
    position (a shorter list means the last iterations logged nothing; `gaps` counts `None` entries);
    `weights`: `{position: weight}` where the loop gave a weight of its own. `samples`: per-iteration
    sample counts where the loader's arithmetic does not give them (`None`: it does). `steps`: the
    iteration counts (1-based, within the span) each optimizer step came after. `inside`: 1 while a
    batch is out with the loop (a step then counts after that iteration). `active`: a hot loop is
    running (steps go to `steps`, not to the core's own path). `floats`: some loss is a number.
    `asked` / `handed`: `time.perf_counter()` when the loop last asked for a batch / got it; `wait`: seconds
    spent waiting for batches since the last fold (engine/run/loop_health.py reads them, the heartbeat too).
    """

    __slots__ = ("n", "losses", "weights", "samples", "steps", "inside", "active", "check", "gaps", "floats",
                 "asked", "handed", "wait", "step_outside")

    def __init__(self) -> None:
        self.n = 0
        self.losses: list[Any] = []
        self.weights: dict[int, float] = {}
        self.samples: Optional[list[int]] = None
        self.steps: list[int] = []
        self.inside = 0
        self.active = False
        self.check = True
        self.gaps = 0
        self.floats = False
        self.asked = self.handed = self.wait = 0.0
        self.step_outside: Callable[[], None] = _nothing  # a step while no hot loop runs (the tracker's path)

    def step_hook(self, *args: Any) -> None:
        """The optimizer's step post-hook (`Optimizer.register_step_post_hook`): inside a hot loop, the step
        counts after the iteration in progress (or the last completed one): one call, one append; else
        `step_outside()`."""
        if self.active:
            self.steps.append(self.n + self.inside)
        else:
            self.step_outside()

    def log(self, loss: Any, weight: Optional[float] = None) -> None:
        """The loss of the iteration in progress (a reference; a second call in one iteration replaces it)."""
        losses = self.losses
        if len(losses) == self.n:  # the common case: every iteration logs once
            losses.append(loss)
        else:
            missing = self.n - len(losses)
            if missing >= 0:
                losses.extend([None] * missing)
                self.gaps += missing
                losses.append(loss)
            else:
                losses[-1] = loss
        if weight is not None:
            self.weights[self.n] = float(weight)

    def take(self) -> tuple[int, list[Any], dict[int, float], Optional[list[int]], list[int], int, bool]:
        """The completed span, reset: `(n, losses, weights, samples, steps, gaps, floats)`. Steps that came
        inside the iteration still in progress stay, renumbered for the next span (they count after it)."""
        n = self.n
        losses, weights, samples, steps = self.losses, self.weights, self.samples, self.steps
        done = [p for p in steps if p <= n] if steps and steps[-1] > n else steps
        later = [p - n for p in steps if p > n] if done is not steps else []
        if len(losses) > n:  # the iteration in progress logged already: its loss stays with it
            kept, losses = losses[n:], losses[:n]
        else:
            kept = []
        gaps = self.gaps + (n - len(losses))
        self.n, self.losses, self.weights, self.steps, self.gaps = 0, kept, {}, later, 0
        if weights and kept:
            self.weights = {p - n: w for p, w in weights.items() if p >= n}
            weights = {p: w for p, w in weights.items() if p < n}
        if samples is not None:  # kept in place: the loop holds this list
            done_samples = samples[:n]
            del samples[:n]
            samples = done_samples
        floats, self.floats = self.floats, self.floats and bool(kept)
        return n, losses, weights, samples, done, gaps, floats


class Ticker:
    """A daemon thread that raises `hot.check` every `interval()` seconds (the publication rate, asked again
    at each tick: it slows while nobody watches), so the loop never reads a clock per iteration. `stop()`
    ends it within one interval."""

    def __init__(self, hot: HotPath, interval: Callable[[], float]) -> None:
        self.hot, self.interval = hot, interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "Ticker":
        self._thread = threading.Thread(target=self._run, name="trainmon-ticker", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval()):
            self.hot.check = True

    def stop(self) -> None:
        self._stop.set()


def _nothing() -> None:
    pass
