"""The job's stdout and stderr recorded at the file-descriptor level, whatever wrote them. No torch, no textual.

`OutputCapture.start()` puts a pipe over fd 1 and 2 (`dup2`), so Python's prints, C extensions'
`printf`, and child processes that inherit the fds all land in it (the way wandb's console "redirect"
mode works). Where both went to one place (a terminal, output.log) one pipe takes both, so their
order is kept exactly; where they went apart (`2>err.txt`) each has its own pipe, each stream keeps
its order, and between them the file's order may differ by a line. A reader thread per pipe copies each
chunk, as it comes, to the fd that was there before (the terminal: nothing is lost) and hands it to a writer thread for
the run directory's rotating file (`output_log.RotatingOutput`). The hand-over is a bounded queue: a slow
disk never holds up the job; what does not fit is dropped and counted, and a `[trainmon: N bytes of
output not recorded ...]` line says so in the file. `stop()` (also at interpreter exit) puts the old fds
back and drains the pipes. Nothing here runs per iteration: only when the job prints.

Where the old fd is the output file itself (a detached engine, `trainmon exec`: their stdout is
output.log; a detached torchrun rank's is rank 0's output.log), nothing is copied back to it, so no line is
written twice. `TRAINMON_CAPTURE=0` turns
capture off (`capture_choice()`).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from trainmon.engine.record.output_log import RotatingOutput

CAPTURE_ENV = "TRAINMON_CAPTURE"
QUEUE_CHUNKS = 64  # pipe reads waiting for the disk (a few KiB each while a job trickles, ≤ 1 MiB in a flood)
READ_BYTES = 1 << 20
PIPE_BYTES = 1 << 20  # the pipe's buffer (Linux: F_SETPIPE_SZ; 64 KiB where it cannot be raised)
GATHER_SECONDS = 0.01  # after a short read the reader lets lines gather: ≤ 100 wake-ups a second, not one a line


def capture_choice() -> tuple[bool, str]:
    """`(on, why)`: off when `$TRAINMON_CAPTURE` is `0`, `false`, `no` or `off`."""
    value = os.environ.get(CAPTURE_ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False, f"{CAPTURE_ENV}={os.environ[CAPTURE_ENV]}"
    return True, "captured"


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _same_destination(a: int, b: int) -> bool:
    """Two fds writing to one place (the same terminal, the same file)."""
    try:
        x, y = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (x.st_dev, x.st_ino, x.st_rdev) == (y.st_dev, y.st_ino, y.st_rdev)


class OutputCapture:
    """Tees fds 1 and 2 of this process into `folder/name` (rotated, see `output_log`).

    `tee`: copy to the old fds too (default: unless an old fd is the output file itself). `stdout()` gives
    a text stream on the old fd 1, for lines that are trainmon's and not the job's (headless key=value
    lines). `dropped_bytes`: what the bounded queue could not take.
    """

    FDS = (1, 2)

    def __init__(self, folder: Path, name: str = "output.log", file_bytes: Optional[int] = None,
                 tee: Optional[bool] = None, queue_chunks: int = QUEUE_CHUNKS) -> None:
        self.out = RotatingOutput(Path(folder), name, file_bytes)
        self._tee = tee
        self._queue: queue.Queue = queue.Queue(maxsize=queue_chunks)
        self._saved: dict[int, int] = {}
        self._readers: list[threading.Thread] = []
        self._writer: Optional[threading.Thread] = None
        self._stdout: Any = None
        self.dropped_bytes = 0
        self._unreported = 0
        self.started = False

    def start(self) -> "OutputCapture":
        """Install the pipes (flushing Python's own buffers first). Raises `OSError` when fds cannot be made."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        self._writer = threading.Thread(target=self._write_loop, name="trainmon-output-writer", daemon=True)
        self._writer.start()
        saved = {fd: os.dup(fd) if self._fd_open(fd) else os.open(os.devnull, os.O_WRONLY) for fd in self.FDS}
        shared = _same_destination(saved[1], saved[2])  # a terminal, output.log: one pipe keeps their order
        for fd in self.FDS:
            os.set_inheritable(saved[fd], False)
            self._saved[fd] = saved[fd]
            if shared and fd == 2:
                os.dup2(1, 2)  # fd 1 is the pipe already
                continue
            own_files = (self.out.path, self.out.path.with_name("output.log"))  # a rank's stdout may be rank 0's file
            tee = self._tee if self._tee is not None else not any(_same_file(saved[fd], f) for f in own_files)
            read_end, write_end = os.pipe()
            try:
                fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
            except OSError:
                pass  # the default 64 KiB (a lower pipe-max-size): the job may wait on the reader a little more
            os.dup2(write_end, fd)  # fd stays inheritable: child processes write into the capture too
            os.close(write_end)
            thread = threading.Thread(target=self._read_loop, args=(read_end, saved[fd] if tee else None, not shared),
                                      name=f"trainmon-output-{fd}", daemon=True)
            thread.start()
            self._readers.append(thread)
        self.started = True
        atexit.register(self.stop)
        return self

    @staticmethod
    def _fd_open(fd: int) -> bool:
        try:
            os.fstat(fd)
            return True
        except OSError:
            return False

    def stdout(self) -> Any:
        """A line-buffered text stream on the fd 1 there was before `start()` (or `sys.stdout` when not started)."""
        if not self.started:
            return sys.stdout
        if self._stdout is None:
            self._stdout = open(os.dup(self._saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
        return self._stdout

    def _read_loop(self, read_fd: int, tee_fd: Optional[int], whole_lines: bool) -> None:
        """`whole_lines` (stdout and stderr on two pipes): a line's start waits for its end before it goes to
        the file, so the other stream's lines fall between lines, not inside one (a `\r` bar goes at once)."""
        held = b""
        while True:
            try:
                data = os.read(read_fd, READ_BYTES)
            except OSError:
                data = b""
            if not data:
                if held:
                    self._record(held)
                break
            if tee_fd is not None:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(tee_fd, view):]
                except OSError:
                    tee_fd = None  # the terminal went away (SIGHUP): the file still gets everything
            if whole_lines:
                data, held = held + data, b""
                end = data.rfind(b"\n") + 1
                if end < len(data) and b"\r" not in data[end:] and len(data) - end < READ_BYTES:
                    data, held = data[:end], data[end:]
                if not data:
                    continue
            self._record(data)
            if len(data) < 65536:  # a trickle (a flood is read at once, the pipe holds 1 MiB meanwhile)
                time.sleep(GATHER_SECONDS)  # the GIL is the training loop's: wake up for many lines at once
        os.close(read_fd)

    def _record(self, data: bytes) -> None:
        try:
            self._queue.put_nowait(data)
        except queue.Full:
            self.dropped_bytes += len(data)  # the disk is behind: the job never waits for it
            self._unreported += len(data)

    def _write_loop(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            while True:  # whatever else is waiting goes in the same write
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                data += more
                if len(data) >= READ_BYTES:
                    break
            if self._unreported:
                lost, self._unreported = self._unreported, 0
                self.out.write(f"\n[trainmon: {lost} bytes of output not recorded here: the disk was slow]\n"
                               .encode())
            self.out.write(data)

    def stop(self) -> None:
        """Put fds 1 and 2 back, record what is still in the pipes, close the file. Safe to call twice."""
        if not self.started:
            return
        self.started = False
        atexit.unregister(self.stop)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)  # the pipe's last write end here closes (children may still hold one)
        for thread in self._readers:
            thread.join(timeout=2.0)
        self._queue.put(None)
        if self._writer is not None:
            self._writer.join(timeout=5.0)
        if self._stdout is not None:  # left open: trainmon's last lines still reach the terminal
            try:
                self._stdout.flush()
            except (OSError, ValueError):
                pass
        for saved in self._saved.values():
            os.close(saved)
        self._saved.clear()
        self.out.close()


_latest: Optional[OutputCapture] = None  # the newest capture this process started


def start_capture(folder: Path, name: str = "output.log", tee: Optional[bool] = None) -> tuple[Optional[OutputCapture], dict]:
    """`(capture or None, note)`: capture this process's output into `folder/name` unless the user turned it
    off; `note` (for run.json's `output`) says which, the file and its rotation figures. A failure to start
    is a note too, never an error: the job runs as it would without trainmon. A capture still on from an
    earlier run in this process (a tracked run keeps its capture until exit) is stopped first."""
    global _latest
    on, why = capture_choice()
    note: dict[str, Any] = {"captured": on, "why": why, "file": name}
    if not on:
        return None, note
    if _latest is not None:  # a tracked run that ended earlier in this process: its capture ends here
        _latest.stop()
    try:
        capture = _latest = OutputCapture(folder, name, tee=tee).start()
    except OSError as exc:
        _latest = None
        return None, {**note, "captured": False, "why": f"could not capture: {exc}"}
    note.update(file_mib=round(capture.out.file_bytes / 1048576, 3), keep=capture.out.keep)
    return capture, note
