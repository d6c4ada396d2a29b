"""Open the app on a run handle, and say what happened once the terminal is back."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional


def run_viewer(handle: Any, run_id: str, refresh_hz: float = 4.0, output_log: Optional[Path] = None) -> int:
    """Run the TUI on `handle` (a `RunClient` for a live run, a `RecordedRun` for an ended one) and
    return the exit code: 0, 1 when the run failed, 2 when the engine refused the job or an option,
    130 after Ctrl+C. Detaching (`d`) or closing the viewer leaves the run going."""
    from .app import TrainmonApp

    app = TrainmonApp(handle, refresh_hz=refresh_hz, run_id=run_id)
    try:
        app.run()
    finally:
        handle.close()
    if app.detached:
        print(f"trainmon: detached from run {run_id}; it goes on. `trainmon attach {run_id}` to come back, "
              f"`trainmon stop {run_id}` to stop it.", file=sys.stderr)
        return 0
    report_after_exit(app, output_log)
    if app.return_code not in (None, 0):
        return app.return_code
    return app.exit_code()


def report_after_exit(app: Any, log_path: Optional[Path]) -> None:
    """Once the terminal is back: the run's summary or failure, and where the job's output went."""
    from trainmon.engine.report import summary_line

    failed = app.failed_event
    if failed is not None and failed.phase == "setup":
        print(f"trainmon: error: {failed.message}", file=sys.stderr)
    elif failed is not None:
        print(f"trainmon: run failed: {failed.message}", file=sys.stderr)
        if failed.user_traceback:
            print(failed.user_traceback.rstrip(), file=sys.stderr)
    elif app.finished_event is not None:
        print(summary_line(app.finished_event))
    if log_path and os.path.exists(log_path) and os.path.getsize(log_path):
        print(f"trainmon: the job's own output is in {log_path}", file=sys.stderr)
