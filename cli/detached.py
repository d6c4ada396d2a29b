"""The default way to run: the engine detached in its own session, the TUI attached to it."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import click

from trainmon.engine.control.client import ConnectError, RunClient
from trainmon.engine.core import messages as msg
from trainmon.engine.record.rundir import OUTPUT_FILE
from trainmon.engine.run.session import discard_run
from trainmon.engine.run.spawn import describe_exit, spawn_engine, wait_for_socket


def _output_tail(rundir: Any, lines: int = 5) -> str:
    try:
        text = (rundir.path / OUTPUT_FILE).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def run_detached(rundir: Any, detach: bool, refresh_hz: float, new_run: bool = True) -> int:
    """Start the engine for `rundir`; then print its id (`detach`) or open the TUI on it.
    Returns the exit code: 2 when the engine refused the job or an option, as a headless run would
    (a `new_run` that never trained is removed then; a resumed run keeps its directory)."""
    if not new_run:
        from trainmon.engine.run.distributed_launch import resume_refusal

        refusal = resume_refusal(rundir.info, rundir.path)
        if refusal:  # checked before an engine starts: run.json stays as it was
            click.echo(f"trainmon: error: {refusal}", err=True)
            rundir.info.pop("resume_request", None)
            rundir.write_info()
            return 2
    return follow(spawn_engine(rundir), rundir, detach, refresh_hz, new_run)


def follow(process: Any, rundir: Any, detach: bool, refresh_hz: float, new_run: bool = True,
           timeout: float = 30.0, not_ready: Any = None, who: str = "engine") -> int:
    """Wait for `process` (an engine, or a script `trainmon exec` started) to open `rundir`'s socket, then
    print the run's id (`detach`) or open the TUI on it. `not_ready(exc)`: the error line when it exits or
    `timeout` seconds pass first (default: the exception's text); `who` names it when it is gone.
    Exit codes as `run_detached`'s."""
    socket_path = rundir.info["socket"]
    if not detach and sys.stderr.isatty():  # the engine imports torch and builds the job first (~1–3 s)
        click.echo(f"trainmon: starting {who} for run {rundir.info['id']}…", err=True)
    try:
        wait_for_socket(socket_path, process, timeout=timeout)
        client = RunClient(socket_path, gone_reason=lambda: _gone(process, who))
    except (RuntimeError, ConnectError) as exc:
        click.echo(f"trainmon: error: {not_ready(exc) if not_ready else exc}", err=True)
        tail = _output_tail(rundir)
        if tail:
            click.echo(tail, err=True)
        return 1
    client.subscribe()
    if detach:
        code = _report_start(client, rundir)
    else:
        from trainmon.tui.launch import run_viewer

        code = run_viewer(client, rundir.info["id"], refresh_hz=refresh_hz, output_log=rundir.path / OUTPUT_FILE)
    if code == 2 and new_run:  # the engine refused the job or an option before training: the run never was
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return code
        discard_run(rundir)
    return code


def _gone(process: Any, who: str = "engine") -> str | None:
    """Why our engine is gone (its socket closed): its exit, signal named (`killed by SIGKILL`).
    The socket closes a moment before the process can be reaped, so wait that moment."""
    try:
        code = process.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        return None
    return f"the {who} exited ({describe_exit(code)})"


def _report_start(client: RunClient, rundir: Any, timeout: float = 300.0) -> int:
    """`--detach`: wait until the engine has built and checked the job, then print the run's id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        update = client.poll()
        for event in update.events:
            if isinstance(event, msg.Failed):
                click.echo(f"trainmon: error: {event.message}", err=True)
                return 2 if event.phase == "setup" else 1
        if update.snapshot is not None and update.snapshot.status != msg.STARTING:
            break
        if not client.alive and not update.events:
            click.echo(f"trainmon: error: {client.gone_reason()}", err=True)
            return 1
        time.sleep(0.05)
    client.close()
    run_id = rundir.info["id"]
    click.echo(run_id)
    if sys.stderr.isatty():
        click.echo(f"trainmon: run {run_id} started in the background: `trainmon attach {run_id}` to watch, "
                   f"`trainmon stop {run_id}` to stop it", err=True)
    return 0
