"""Headless mode: the run as plain key=value lines, no carriage returns or escape codes.

One line per epoch, a progress line at most every `progress_every` seconds inside long epochs, one
line per non-finite loss (the first few), and a final summary line.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

from trainmon.engine.core import messages as msg
from trainmon.engine.core.report import event_line, progress_line


class HeadlessPrinter:
    """A channel listener that prints the run as lines to `out` (stdout by default)."""

    MAX_NONFINITE_LINES = 10

    def __init__(self, out: TextIO | None = None, progress_every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out or sys.stdout
        self.progress_every = progress_every
        self.clock = clock
        self._last_progress = clock()
        self._nonfinite_lines = 0
        self.final: Any = None

    closed = False  # the reader of our output went away (`| head`): the run stops, quietly

    def print_line(self, line: str) -> None:
        if self.closed:
            return
        try:
            print(line, file=self.out, flush=True)
        except BrokenPipeError:
            self.closed = True

    _print = print_line

    def __call__(self, item: Any) -> None:
        if isinstance(item, msg.Snapshot):
            now = self.clock()
            if item.status == msg.RUNNING and now - self._last_progress >= self.progress_every:
                self._last_progress = now
                self._print(progress_line(item))
        else:
            if isinstance(item, msg.EpochEnded):
                self._last_progress = self.clock()
            if isinstance(item, msg.NonFiniteLoss):
                self._nonfinite_lines += 1
                if self._nonfinite_lines > self.MAX_NONFINITE_LINES:
                    return
            if isinstance(item, (msg.Finished, msg.Failed)):
                self.final = item
            line = event_line(item)
            if line is not None:
                self._print(line)
