"""What a tracked run needs from the user's own process: to end with it, and to hear `kill PID`.

A loop trainmon does not run has no `finally` of trainmon's around it, so the run is ended from the
interpreter's own hooks: an uncaught exception (`sys.excepthook`: failed, or stopped for Ctrl+C) and
the interpreter's exit (`atexit`: finished, or failed after an exception the hook did not see). A first
`SIGTERM`, or `SIGHUP` (the terminal closed), asks the loop to stop at its next safe point (lock-free),
so the run ends `stopped`, not `lost`; a second one ends the script at once. Only where the script left
the signal at its default, and only from the main thread. No torch, no textual.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from typing import Any, Callable, Optional

STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class ScriptHooks:
    """Installs the hooks for one run; `on_end(error)` ends it (`None`: a normal end, a `KeyboardInterrupt`:
    stopped, another exception: failed) and is called at most once; `request_stop()` is called from the
    SIGTERM handler (it must take no lock). `uninstall()` gives the script its own hooks back."""

    def __init__(self, on_end: Callable[[Optional[BaseException]], None], request_stop: Callable[[], None]) -> None:
        self.on_end, self.request_stop = on_end, request_stop
        self._previous_hook: Any = None
        self._previous: dict[int, Any] = {}
        self._ended = False
        self.signalled: Optional[int] = None  # the first signal that asked for the stop
        self._tty_fds: tuple[int, ...] = ()  # standard output/error that are a terminal (SIGHUP: it closed)

    def install(self) -> "ScriptHooks":
        self._tty_fds = tuple(fd for fd in (1, 2) if _isatty(fd))
        self._previous_hook = sys.excepthook
        sys.excepthook = self._excepthook
        atexit.register(self._at_exit)
        for signum in STOP_SIGNALS:
            try:
                if signal.getsignal(signum) is signal.SIG_DFL:
                    self._previous[signum] = signal.signal(signum, self._on_term)
            except ValueError:  # not the main thread: signals are the script's business
                break
        return self

    def uninstall(self) -> None:
        atexit.unregister(self._at_exit)
        if sys.excepthook == self._excepthook and self._previous_hook is not None:
            sys.excepthook = self._previous_hook
        for signum, previous in self._previous.items():
            try:
                if signal.getsignal(signum) == self._on_term:
                    signal.signal(signum, previous or signal.SIG_DFL)
            except ValueError:
                pass

    def _end(self, error: Optional[BaseException]) -> None:
        if not self._ended:
            self._ended = True
            self.on_end(error)

    def _excepthook(self, kind: Any, error: Any, tb: Any) -> None:
        try:  # the traceback first: while the run is open, it is recorded in the run's output.log too
            (self._previous_hook or sys.__excepthook__)(kind, error, tb)
        finally:
            self._end(error)

    def _at_exit(self) -> None:
        self._end(getattr(sys, "last_value", None))  # an exception the hook did not see (another hook ran)

    def _on_term(self, signum: int, frame: Any) -> None:
        for other in self._previous:
            signal.signal(other, signal.SIG_DFL)  # a second one ends the script at once
        if self.signalled is None:
            self.signalled = signum
            _watch_exit(signum)
        if signum == getattr(signal, "SIGHUP", None):
            _leave_closed_terminal(self._tty_fds)
        self.request_stop()


def _leave_closed_terminal(fds: tuple[int, ...]) -> None:
    """The terminal closed: a print would now fail with EIO and turn a stop into a failure. Standard
    output and error that were a terminal at install (`fds`; a hung-up terminal no longer says it is
    one) go to /dev/null, as `nohup` would have sent them away."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for fd in fds:
        try:
            os.dup2(null, fd)
        except OSError:
            pass
    os.close(null)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


# ---- the exit code of a script a signal stopped ------------------------------------------------
_exit_signal: Optional[int] = None
_script_code: list = []  # the code the script gave sys.exit(), if it did


def _watch_exit(signum: int) -> None:
    """A signal stopped the run: once the script's own code after its loop has run, the process ends with
    128 + the signal (as a shell and a scheduler expect of a stopped job) — unless the script exits with
    a code of its own (`sys.exit(n)`) or an exception. Registered last, so it runs first at exit: it runs
    the other exit handlers itself, then flushes and ends the process with that code."""
    global _exit_signal
    if _exit_signal is not None:
        return
    _exit_signal = signum
    original = sys.exit

    def exit_with_own_code(code: Any = None) -> None:
        _script_code.append(code)
        original(code)

    sys.exit = exit_with_own_code
    atexit.register(_exit_with_signal)


def _exit_with_signal() -> None:
    if _exit_signal is None or _script_code or getattr(sys, "last_value", None) is not None:
        return
    atexit.unregister(_exit_with_signal)
    atexit._run_exitfuncs()  # every other exit handler, as the interpreter would (CPython keeps this function)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(128 + _exit_signal)
