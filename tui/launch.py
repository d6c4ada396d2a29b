"""Open the app on a run handle, and say what happened once the terminal is back."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Optional

# what textual's application mode turns on, turned off: kitty keys, mouse, bracketed paste, focus
# events, no line wrap, alternate screen, hidden cursor
RESTORE_TERMINAL = ("\x1b[<u\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?2004l\x1b[?1004l"
                    "\x1b[?7h\x1b[?1049l\x1b[?25h")
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)


class ViewerSignals:
    """SIGTERM, SIGHUP, SIGINT and SIGQUIT end this viewer, never the run (the engine is another process).

    The first one asks the app to exit, so textual's own shutdown restores the terminal (alternate
    screen off, mouse off, cursor shown). When that has not ended the process within `grace` seconds
    (writes to a terminal that is gone can block), when a second signal comes, or when the app is
    not running yet, the terminal modes are reset by hand and the process exits at once. Either way
    the exit status is 128 + the signal number.
    """

    def __init__(self, grace: float = 2.0) -> None:
        self.grace = grace
        self.received: Optional[int] = None
        self._app: Any = None
        self._fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
        self._attrs: Optional[list] = None
        self._previous: dict[int, Any] = {}
        self._app_ended = threading.Event()

    def install(self, app: Any) -> "ViewerSignals":
        """Take the four signals for `app` (before `app.run()`, in the main thread)."""
        self._app = app
        try:
            import termios

            self._attrs = termios.tcgetattr(sys.__stdin__.fileno())
        except Exception:  # noqa: BLE001 - no terminal (a pipe): nothing to restore
            self._attrs = None
        for signum in ENDING_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def uninstall(self) -> None:
        """The app has ended (its terminal is restored): the signals go back to what they were."""
        self._app_ended.set()
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    @property
    def exit_code(self) -> Optional[int]:
        return None if self.received is None else 128 + self.received

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.received is not None:
            self._force()
        self.received = signum
        # The handler runs in the app's own thread, between two bytecodes of its event loop: hand the
        # exit to that loop from a helper thread (call_from_thread), and watch the clock from another.
        threading.Thread(target=self._end_app, name="trainmon-signal", daemon=True).start()
        threading.Thread(target=self._watchdog, name="trainmon-signal-watchdog", daemon=True).start()

    def _end_app(self) -> None:
        code = self.exit_code
        try:
            self._app.call_from_thread(self._app.exit, code, return_code=code)
        except Exception:  # noqa: BLE001 - the app is not running (yet, or any more)
            self._force()

    def _watchdog(self) -> None:
        if not self._app_ended.wait(self.grace):
            self._force()

    def _force(self) -> None:
        """Reset the terminal by hand and leave now (the run's socket closes with the process)."""
        writer = threading.Thread(target=self._restore_terminal, daemon=True)
        writer.start()
        writer.join(0.5)  # a terminal that no longer reads must not keep this process alive
        os._exit(self.exit_code or 1)

    def _restore_terminal(self) -> None:
        try:
            os.write(self._fd, RESTORE_TERMINAL.encode())
        except OSError:
            pass
        if self._attrs is not None:
            try:
                import termios

                termios.tcsetattr(sys.__stdin__.fileno(), termios.TCSANOW, self._attrs)
            except Exception:  # noqa: BLE001 - a terminal already gone: nothing left to restore
                pass


def run_viewer(handle: Any, run_id: str, refresh_hz: float = 4.0, output_log: Optional[Path] = None,
               watch_only: bool = False) -> int:
    """Run the TUI on `handle` (a `RunClient` for a live run, a `RecordedRun` for an ended one) and
    return the exit code: 0, 1 when the run failed, 2 when the engine refused the job or an option,
    130 after Ctrl+C, 128 + N when signal N (TERM, HUP, INT, QUIT) ended this viewer. Detaching
    (`d`), closing the viewer or a signal leaves the run going. The runs screen (`r`) may open another
    run in this view: what is said at the end is of the run shown last; with `watch_only` (`trainmon
    serve`'s read-only tab) a live run opened there is watched without steering, as the first was."""
    from .app import TrainmonApp

    app = TrainmonApp(handle, refresh_hz=refresh_hz, run_id=run_id)
    app.watch_only = watch_only
    signals = ViewerSignals().install(app)
    try:
        app.run()
    finally:
        signals.uninstall()
        app.run_handle.close()
    if app.run_id != run_id:  # another run was opened: the job's output file was the first run's
        run_id, output_log = app.run_id, None
    if signals.received is not None:
        _say(f"trainmon: this viewer ended on {signal.Signals(signals.received).name}; run {run_id} goes on. "
             f"`trainmon attach {run_id}` to come back, `trainmon stop {run_id}` to stop it.")
        return signals.exit_code or 1
    if app.detached:
        _say(f"trainmon: detached from run {run_id}; it goes on. `trainmon attach {run_id}` to come back, "
             f"`trainmon stop {run_id}` to stop it.")
        return 0
    report_after_exit(app, output_log)
    if app.return_code not in (None, 0):
        return app.return_code
    return app.exit_code()


def wrapped(text: str, stream: Any) -> str:
    """`text` broken between words at the terminal's width when `stream` is one (a terminal would cut
    a long line mid-word: `val_lo` / `ss=0.1634`); as it is when piped (scripts read whole lines)."""
    try:
        if not stream.isatty():
            return text
        width = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return text
    import re
    import textwrap

    # a `quoted command` is one word: `trainmon attach ID` never breaks between its words
    held = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", "\u00a0"), text)
    return "\n".join(textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False)
                     for line in held.splitlines()).replace("\u00a0", " ")


def _say(line: str) -> None:
    """One line on stderr, which may be gone (a closed terminal, SIGHUP), wrapped between words."""
    try:
        print(wrapped(line, sys.stderr), file=sys.stderr, flush=True)
    except OSError:
        pass


def report_after_exit(app: Any, log_path: Optional[Path]) -> None:
    """Once the terminal is back: the run's summary or failure, and where the job's output went."""
    from trainmon.engine.core.report import summary_line

    failed = app.failed_event
    if failed is not None and failed.phase == "setup":
        print(f"trainmon: error: {failed.message}", file=sys.stderr)
    elif failed is not None:
        print(f"trainmon: run failed: {failed.message}", file=sys.stderr)
        if failed.user_traceback:
            print(failed.user_traceback.rstrip(), file=sys.stderr)
    elif app.finished_event is not None:
        print(wrapped(summary_line(app.finished_event), sys.stdout))
    if log_path and os.path.exists(log_path) and os.path.getsize(log_path):
        print(f"trainmon: the job's own output is in {log_path}", file=sys.stderr)
