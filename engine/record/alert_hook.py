"""`--on-alert CMD`: a shell command that hears each alert and the run's end, for someone who is not watching.

A sink on the channel of the process that records the run (rank 0 only: the other ranks record nothing).
Each `Alert` event, and the run's end (`Finished` → kind `finished` or `stopped`, `Failed` → `failed`),
becomes one JSON object (`notice`) on the stdin of `sh -c CMD`. The commands run on a worker thread of
their own, one at a time and in order, each within `timeout` seconds (then it and its whole process group
are killed): the loop's thread only puts a dict on a queue, so a slow or failing command never slows or
stops training. A command's own output goes to the process's stderr (a detached run's output.log),
never to stdout, where headless runs print their key=value lines.

Each failure (cannot start, exit status other than 0, timed out, cut off at the run's end) is one line
`trainmon: warning: ...` on stderr at once and, while the run goes on, a `Warned` event emitted on the
loop's thread at the next publication (so `trainmon logs` shows it). `close()` waits, bounded, for the
end notice. No torch, no textual.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

from trainmon.engine.core import messages as msg

TIMEOUT = 10.0  # seconds a command may take before it is killed
END_WAIT = 5.0  # seconds the run's end waits for the notices still queued (the end notice last)


def notice(identity: dict[str, Any], kind: str, message: str, epoch: int, global_iteration: int,
           at: Optional[float] = None, rank: Optional[int] = None, host: Optional[str] = None) -> dict[str, Any]:
    """The JSON object a command reads: `run_id`, `name`, `run_dir` (from `identity`), `kind` (an alert
    kind, or `finished` / `stopped` / `failed`), `message` (one line), 1-based `epoch` and
    `global_iteration`, `time` (Unix seconds), `rank` (`null` unless an alert names a torchrun rank) and
    `host` (the rank's machine, else this one)."""
    return {"run_id": identity.get("run_id"), "name": identity.get("name"), "run_dir": identity.get("run_dir"),
            "kind": kind, "message": message, "epoch": epoch, "global_iteration": global_iteration,
            "time": time.time() if at is None else at, "rank": rank, "host": host or socket.gethostname()}


def end_message(event: Any) -> tuple[str, str]:
    """`(kind, message)` of a run's final event: `finished`/`stopped` with the counts and losses, or
    `failed` with the error's last line."""
    if isinstance(event, msg.Failed):
        lines = [line for line in str(event.message).strip().splitlines() if line.strip()]
        return "failed", lines[-1].strip() if lines else "failed"
    kind = "stopped" if event.stopped else "finished"
    loss = f", train_loss {event.train_loss:.4g}" if event.train_loss is not None else ""
    val = f", val_loss {event.val_loss:.4g}" if event.val_loss is not None else ""
    return kind, (f"{kind} after {_count(event.epochs_completed, 'epoch')} ({_count(event.global_iteration, 'iteration')}, "
                  f"{_count(event.global_step, 'optimizer step')}) in {event.elapsed:.0f} s{loss}{val}")


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class AlertHook:
    """Sink (`publish`, `emit`, `close`) that runs `command` with `sh -c` once per alert and once at the run's
    end. `identity()` gives `run_id`, `name` and `run_dir` (read at each notice: a job's name comes late).
    `warn(event)`: emits a `Warned` on the loop's thread (the channel's `emit`), or `None`. `timeout`
    and `end_wait`: seconds (see the module docstring)."""

    def __init__(self, command: str, identity: Callable[[], dict[str, Any]],
                 warn: Optional[Callable[[msg.Warned], None]] = None, timeout: float = TIMEOUT,
                 end_wait: float = END_WAIT) -> None:
        self.command, self.identity, self.warn = command, identity, warn
        self.timeout, self.end_wait = timeout, end_wait
        self.delivered: list[dict[str, Any]] = []  # notices whose command exited 0 (for tests and the log)
        self._queue: queue.Queue = queue.Queue()
        self._problems: collections.deque = collections.deque()  # worker thread appends, loop thread pops
        self._epoch = self._global_iteration = 0
        self._ended = self._cut_off = False
        self._process: Optional[subprocess.Popen] = None
        self._thread = threading.Thread(target=self._work, name="trainmon-on-alert", daemon=True)
        self._thread.start()

    # ---- the loop's thread -------------------------------------------------------------------
    def publish(self, snapshot: msg.Snapshot, delta: Any) -> None:
        self._epoch, self._global_iteration = snapshot.epoch, snapshot.global_iteration
        while self._problems and self.warn is not None and not self._ended:
            self.warn(msg.Warned(self._problems.popleft(), self._epoch, self._global_iteration))

    def emit(self, event: Any) -> None:
        if isinstance(event, msg.Alert):
            self._queue.put(notice(self.identity(), event.kind, event.message, event.epoch, event.global_iteration,
                                   event.time, event.rank, event.host))
        elif isinstance(event, (msg.Finished, msg.Failed)) and not self._ended:
            self._ended = True  # one end notice, whatever else follows
            kind, message = end_message(event)
            at = event.global_iteration if isinstance(event, msg.Finished) else self._global_iteration
            self._queue.put(notice(self.identity(), kind, message, self._epoch, at))

    def close(self) -> bool:
        """Wait up to `end_wait` seconds for the notices still queued; then kill the command running and
        drop the rest (one line on stderr each). True when every notice was delivered or failed on its own."""
        self._queue.put(None)
        self._thread.join(self.end_wait)
        if not self._thread.is_alive():
            return True
        self._cut_off = True
        process = self._process
        if process is not None:
            _kill_group(process)
        self._thread.join(1.0)
        return False

    # ---- the worker thread -------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._cut_off:
                self._problem(f"--on-alert command not run for {item['kind']}: the run ended "
                              f"(waited {self.end_wait:g} s for the commands before it)")
                continue
            try:
                self._run(item)
            except Exception as exc:  # noqa: BLE001 - this thread must live on for the notices after it
                self._problem(f"--on-alert command for {item.get('kind')} not run: {type(exc).__name__}: {exc}")

    def _run(self, item: dict[str, Any]) -> None:
        data = (json.dumps(item, allow_nan=False, default=str) + "\n").encode()
        what = f"--on-alert command for {item['kind']}"
        try:  # its output goes to stderr: stdout holds a headless run's key=value lines
            process = subprocess.Popen(["sh", "-c", self.command], stdin=subprocess.PIPE, stdout=2, stderr=2,
                                       start_new_session=True, close_fds=True)
        except OSError as exc:
            self._problem(f"{what} could not start: {exc.strerror or exc}")
            return
        self._process = process
        try:
            process.communicate(data, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait()
            self._problem(f"{what} timed out after {self.timeout:g} s: killed (training went on)")
            return
        finally:
            self._process = None
        if self._cut_off and process.returncode < 0:
            self._problem(f"{what} was killed: the run ended (waited {self.end_wait:g} s for it)")
        elif process.returncode != 0:
            self._problem(f"{what} failed: exit status {process.returncode}")
        else:
            self.delivered.append(item)

    def _problem(self, text: str) -> None:
        self._problems.append(text)
        try:
            print(f"trainmon: warning: {text}", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # no stderr left (closed): the Warned event still says it
            pass


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the command and everything it started (its own session: `sh -c 'sleep 30'` leaves no sleep)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
