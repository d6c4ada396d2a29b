"""Small files replaced on a thread of their own, newest content wins, so the loop never waits on disk.

Replacing a file by rename costs the loop ~2–5 ms on ext4 (its `auto_da_alloc` starts writeback of
the new data at the rename), every epoch on a fast job: a writer thread takes that wait (the GIL is
free during the syscalls). The caller encodes the bytes on its own thread (no shared dict is read
here); for one path only the newest bytes are written. `drain()` waits until everything handed over
is on disk; a durable write drains first, so an older write never lands over a final one. No torch,
no textual.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Optional


class WriteBehind:
    """`submit(path, data)` returns at once; the thread calls `write(path, data)` (e.g. `write_atomic`).

    An error on the thread is kept and raised by the next `submit` or `drain` (the caller's sink is
    then dropped, as a failing sink is); later submissions are still written."""

    def __init__(self, write: Callable[[Path, bytes], None], name: str = "trainmon-write-behind") -> None:
        self._write = write
        self._cond = threading.Condition()
        self._pending: dict[Path, bytes] = {}
        self._busy = False
        self._closed = False
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, path: Path, data: bytes) -> None:
        with self._cond:
            self._raise()
            self._pending[path] = data  # newest wins: an older, unwritten version is dropped
            self._cond.notify()

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every submitted file is written (at most `timeout` seconds)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._pending and not self._busy, timeout=timeout)
            self._raise()

    def close(self) -> None:
        self.drain()
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                path = next(iter(self._pending))
                data = self._pending.pop(path)
                self._busy = True
            try:
                self._write(path, data)
            except Exception as exc:  # noqa: BLE001 - kept for the caller, who drops its sink and says why
                with self._cond:
                    self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
