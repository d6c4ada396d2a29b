"""What a tracked run needs from the user's own process: to end with it, and to hear `kill PID`.

A loop trainmon does not run has no `finally` of trainmon's around it, so the run is ended from the
interpreter's own hooks: an uncaught exception (`sys.excepthook`: failed, or stopped for Ctrl+C) and
the interpreter's exit (`atexit`: finished, or failed after an exception the hook did not see). A first
`SIGTERM` asks the loop to stop at its next safe point (lock-free), so the run ends `stopped`, not
`lost`; a second one ends the script at once. Only where the script left SIGTERM at its default, and
only from the main thread. No torch, no textual.
"""

from __future__ import annotations

import atexit
import signal
import sys
from typing import Any, Callable, Optional


class ScriptHooks:
    """Installs the hooks for one run; `on_end(error)` ends it (`None`: a normal end, a `KeyboardInterrupt`:
    stopped, another exception: failed) and is called at most once; `request_stop()` is called from the
    SIGTERM handler (it must take no lock). `uninstall()` gives the script its own hooks back."""

    def __init__(self, on_end: Callable[[Optional[BaseException]], None], request_stop: Callable[[], None]) -> None:
        self.on_end, self.request_stop = on_end, request_stop
        self._previous_hook: Any = None
        self._previous_term: Any = None
        self._ended = False

    def install(self) -> "ScriptHooks":
        self._previous_hook = sys.excepthook
        sys.excepthook = self._excepthook
        atexit.register(self._at_exit)
        try:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                self._previous_term = signal.signal(signal.SIGTERM, self._on_term)
        except ValueError:  # not the main thread: signals are the script's business
            pass
        return self

    def uninstall(self) -> None:
        atexit.unregister(self._at_exit)
        if sys.excepthook == self._excepthook and self._previous_hook is not None:
            sys.excepthook = self._previous_hook
        try:
            if signal.getsignal(signal.SIGTERM) == self._on_term:
                signal.signal(signal.SIGTERM, self._previous_term or signal.SIG_DFL)
        except ValueError:
            pass

    def _end(self, error: Optional[BaseException]) -> None:
        if not self._ended:
            self._ended = True
            self.on_end(error)

    def _excepthook(self, kind: Any, error: Any, tb: Any) -> None:
        try:
            self._end(error)
        finally:
            (self._previous_hook or sys.__excepthook__)(kind, error, tb)

    def _at_exit(self) -> None:
        self._end(getattr(sys, "last_value", None))  # an exception the hook did not see (another hook ran)

    def _on_term(self, signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the script at once
        self.request_stop()
