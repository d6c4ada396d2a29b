"""The detached engine: `python -m trainmon.engine.daemon RUN_DIR` trains the run described there.

Started by `trainmon` in a session of its own (stdin from /dev/null, output to the run's
output.log), so closing the terminal, an SSH drop (SIGHUP) or killing a viewer never touches it.
The training loop keeps this process's main thread. The socket comes up before torch is imported,
so a viewer sees the run (starting) at once. Exit codes: 0 finished or stopped by a viewer, 1
failed, 2 the job or an option was refused (also on the first batch of an IterableDataset, which is
checked when training draws it; or a resume whose checkpoint does not fit), 130 SIGINT, 143 SIGTERM.
With `resume_request` in run.json (written by `trainmon resume`), the run goes on from its newest
checkpoint in the same directory.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from .channel import Channel
from .rundir import OUTPUT_FILE, RunDirectory
from .session import EngineSession, exit_code


def _install_signals(channel: Channel, received: list[int]) -> None:
    """SIGHUP is ignored; the first SIGTERM/SIGINT stops after the current iteration, a second aborts."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def on_signal(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        channel.request_stop()  # lock-free: may run inside the loop's own queue calls

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def run_engine(run_dir: Path) -> int:
    """Train the run whose run.json is in `run_dir`; returns the exit code (see the module docstring)."""
    os.umask(0o077)
    rundir = RunDirectory.open(run_dir)
    channel = Channel(up=False)
    session = EngineSession(rundir, channel)
    request = rundir.info.get("resume_request")
    if request is not None:
        session.resuming()
    session.start()
    received: list[int] = []
    _install_signals(channel, received)
    code = 1
    try:
        code = _train(session, channel, rundir.info["settings"], received, request)
    except KeyboardInterrupt:
        code = 128 + (received[0] if received else signal.SIGINT)
    finally:
        session.close(code)
    return code


def _train(session: EngineSession, channel: Channel, settings: dict[str, Any], received: list[int],
           request: Any = None) -> int:
    from .arithmetic import PlanError
    from .prepare import prepare_run

    from .checkpoints import CheckpointError
    from .resume import prepare_resume

    options = {k: v for k, v in settings.get("options", {}).items() if v is not None}
    options.pop("tensorboard", None)  # `--tensorboard DIR`: the session's sink, not a RunConfig field
    resume = None
    try:
        if request is not None:  # `trainmon resume`: the run goes on from its newest checkpoint
            job, config, warnings, resume = prepare_resume(session.rundir.path, settings, run_id=session.run_id,
                                                           **request)
        else:
            _spec, job, config, warnings = prepare_run(settings["target"], settings.get("image_size"),
                                                       settings.get("seed", 0), **options)
    except (PlanError, CheckpointError) as exc:
        session.setup_failed(str(exc))
        return 2
    except Exception as exc:  # noqa: BLE001 - any failure to build the job is reported, not crashed on
        from .jobs.loader import one_line

        session.setup_failed(one_line(exc), traceback.format_exc())
        return 1
    # DataLoader workers write to this process's stderr, the run's output.log: a worker that dies
    # before torch can catch its error is explained from there
    result = session.train(job, config, warnings, worker_log=str(session.rundir.path / OUTPUT_FILE), resume=resume)
    return exit_code(result, received)


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: python -m trainmon.engine.daemon RUN_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(run_engine(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
