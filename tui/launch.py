"""Start the engine process, then the app; make sure the engine is gone on every exit path."""

from __future__ import annotations

from typing import Any

from trainmon.engine import messages as msg
from trainmon.engine.process import ProcessRun


def make_run(spec: Any, config: Any, sampler_interval: float | None = 1.0) -> ProcessRun:
    """The engine in a spawned child; its queues are created here, before the app takes the terminal."""
    return ProcessRun(spec, config, sampler_interval=sampler_interval)


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
    if app.return_code not in (None, 0):
        return app.return_code
    return app.exit_code()
