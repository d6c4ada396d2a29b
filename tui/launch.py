"""Start the engine process, then the app; make sure the engine is gone on every exit path."""

from __future__ import annotations

from typing import Any

from trainmon.engine import messages as msg
from trainmon.engine.process import ProcessRun


def make_run(spec: Any, config: Any, sampler_interval: float | None = 1.0, capture_output: bool = True) -> ProcessRun:
    """The engine in a spawned child; its queues are created here, before the app takes the terminal.

    The job's own output (prints, warnings) goes to a log file, not over the UI."""
    return ProcessRun(spec, config, sampler_interval=sampler_interval, capture_output=capture_output)


def run_tui(spec: Any, config: Any, refresh_hz: float = 4.0) -> int:
    """Run the TUI over `spec` under `config`; returns the exit code (1 when the run failed)."""
    from .app import TrainmonApp

    run = make_run(spec, config).start()
    app = TrainmonApp(run, refresh_hz=refresh_hz)
    try:
        app.run()
    finally:
        if run.alive:
            run.send(msg.Stop())
            run.send(msg.Resume())
            run.join(3)
            run.terminate()
    report_after_exit(app, run.log_path)
    if app.return_code not in (None, 0):
        return app.return_code
    return app.exit_code()


def report_after_exit(app: Any, log_path: str | None) -> None:
    """Once the terminal is back: the run's summary or failure, and where the job's output went."""
    import os
    import sys

    from trainmon.engine.report import summary_line

    if app.failed_event is not None:
        print(f"trainmon: run failed: {app.failed_event.message}", file=sys.stderr)
        if app.failed_event.user_traceback:
            print(app.failed_event.user_traceback.rstrip(), file=sys.stderr)
    elif app.finished_event is not None:
        print(summary_line(app.finished_event))
    if log_path and os.path.exists(log_path):
        if os.path.getsize(log_path):
            print(f"trainmon: the job's own output is in {log_path}", file=sys.stderr)
        else:
            os.remove(log_path)
