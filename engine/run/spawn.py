"""Start the detached engine for a run directory and wait until its control socket answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from trainmon.engine.record.rundir import OUTPUT_FILE, RunDirectory


def spawn_engine(rundir: RunDirectory) -> subprocess.Popen:
    """`python -m trainmon.engine.run.daemon RUN_DIR` in a new session: stdin /dev/null, stdout and stderr
    appended to the run's output.log (0600). Returns at once; the engine outlives this process.
    A run whose settings hold a `launch` (`--nproc-per-node N`...) starts under torchrun instead:
    `python -m torch.distributed.run ... -m trainmon.engine.run.daemon RUN_DIR`, every rank that module."""
    launch = (rundir.info.get("settings") or {}).get("launch")
    if launch:
        from trainmon.engine.run.distributed_launch import torchrun_command

        command = torchrun_command(launch, "trainmon.engine.run.daemon", [str(rundir.path)])
    else:
        command = [sys.executable, "-m", "trainmon.engine.run.daemon", str(rundir.path)]
    fd = os.open(rundir.path / OUTPUT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True, close_fds=True,
        )
    finally:
        os.close(fd)


def wait_for_socket(socket_path: str | Path, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Block until the engine's socket file exists. Raises `RuntimeError` (one line) when the engine
    exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    path = Path(socket_path)
    while not path.exists():
        code = process.poll()
        if code is not None:
            raise RuntimeError(f"the engine exited before it was ready ({describe_exit(code)})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the engine did not open its control socket within {timeout:g} s")
        time.sleep(0.02)


def describe_exit(code: Optional[int]) -> str:
    """`exit code 1`, or `killed by SIGKILL` for a negative Popen return code."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
