"""Small files replaced on a thread of their own, newest content wins, so the loop never waits on disk.

Replacing a file by rename costs the loop ~2–5 ms on ext4 (its `auto_da_alloc` starts writeback of
the new data at the rename), every epoch on a fast job: a writer thread takes that wait (the GIL is
free during the syscalls). The caller encodes the bytes on its own thread (no shared dict is read
here, or a function of frozen data makes them on the thread); for one path only the newest bytes are
written. `drain()` waits until everything handed over
is on disk; a durable write drains first, so an older write never lands over a final one. No torch,
no textual.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Optional, Union


class WriteBehind:
    """`submit(path, data)` returns at once; the thread calls `write(path, data)` (e.g. `write_atomic`).
    `call(fn, *args)` hands over other work (the event log's appends), run in the order given, in batches:
    the thread wakes for them every `batch_delay` seconds or at `batch_size` queued (a wake-up per event
    would cost the loop a GIL hand-over each time), and at once for a `drain`.

    An error on the thread is kept and raised by the next `submit` or `drain` (the caller's sink is
    then dropped, as a failing sink is); later submissions are still written."""

    def __init__(self, write: Callable[[Path, bytes], None], name: str = "trainmon-write-behind",
                 batch_delay: float = 0.1, batch_size: int = 256) -> None:
        self._write = write
        self.batch_delay, self.batch_size = batch_delay, batch_size
        self._urgent = False  # a drain waits: calls go at once
        self._cond = threading.Condition()
        self._pending: dict[Path, bytes] = {}
        self._calls: deque[tuple[Callable[..., Any], tuple]] = deque()  # run in order, before files
        self._busy = False
        self._closed = False
        self._error: Optional[BaseException] = None
        self.encode_seconds: dict[Path, float] = {}  # per path, the last function of `submit`'s: its seconds
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, path: Path, data: Union[bytes, Callable[[], bytes]]) -> None:
        """Write `data` to `path` on the thread: bytes, or a function that makes them there (an encoding the
        loop need not wait for: it must read only what no one changes after the call)."""
        with self._cond:
            self._raise()
            self._pending[path] = data  # newest wins: an older, unwritten version is dropped
            self._cond.notify()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the thread, after every call handed over before it (an append to a log: the
        order of calls is kept; a file submitted meanwhile may be written before or after it)."""
        with self._cond:
            self._raise()
            self._calls.append((fn, args))
            if len(self._calls) >= self.batch_size:
                self._cond.notify()

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every submitted file is written and every call made (at most `timeout` seconds)."""
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._pending and not self._calls and not self._busy, timeout=timeout)
            self._urgent = False
            self._raise()

    def close(self) -> None:
        self.drain()
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _write_now(self, path: Path, data: Union[bytes, Callable[[], bytes]]) -> None:
        if not isinstance(data, bytes):
            began = time.perf_counter()
            data = data()
            self.encode_seconds[path] = time.perf_counter() - began
        self._write(path, data)

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: (self._pending or self._closed or self._urgent
                                             or len(self._calls) >= self.batch_size),
                                    timeout=self.batch_delay if self._calls else None)
                if self._calls:
                    work = list(self._calls)
                    self._calls.clear()
                elif self._pending:
                    path = next(iter(self._pending))
                    work = [(self._write_now, (path, self._pending.pop(path)))]
                elif self._closed:
                    return
                else:
                    continue
                self._busy = True
            error = None
            for fn, args in work:
                try:
                    fn(*args)
                except Exception as exc:  # noqa: BLE001 - kept for the caller, who drops its sink and says why
                    error = error or exc
            with self._cond:
                self._busy = False
                if error is not None:
                    self._error = error
                self._cond.notify_all()
