"""Headless mode: the run as plain key=value lines, no carriage returns or escape codes.

One line per epoch, a progress line at most every `progress_every` seconds inside long epochs, one
line per non-finite loss (the first few), and a final summary line. Every line ends in the wall-clock
time it was printed, `time=2026-12-07T01:02:03Z` (UTC), after the fields scripts already parse.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

from trainmon.engine.core import messages as msg
from trainmon.engine.core.format import timed
from trainmon.engine.core.report import event_line, progress_line


class HeadlessPrinter:
    """A channel listener that prints the run as lines to `out` (stdout by default); `clock` (monotonic
    seconds) paces the progress lines, `wall` (Unix seconds) gives each line's `time=`."""

    MAX_NONFINITE_LINES = 10

    def __init__(self, out: TextIO | None = None, progress_every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.out = out or sys.stdout
        self.progress_every = progress_every
        self.clock = clock
        self.wall = wall
        self._last_progress = clock()
        self.nonfinite_lines = 0
        self.final: Any = None

    closed = False  # the reader of our output went away (`| head`): the run stops, quietly

    def print_line(self, line: str) -> None:
        if self.closed:
            return
        try:
            print(timed(line, self.wall()), file=self.out, flush=True)
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
                self.nonfinite_lines += 1
                if self.nonfinite_lines > self.MAX_NONFINITE_LINES:
                    return
            if isinstance(item, (msg.Finished, msg.Failed)):
                self.final = item
            line = event_line(item)
            if line is not None:
                self._print(line)
