"""`trainmon exec -- python train.py ARGS`: a script of the user's own (one that calls `trainmon.track()` or
uses a trainmon callback) runs detached in its own session, recording into a run directory made here, and
the monitor opens on it."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Any, Optional

import click

from .alert_options import alert_options, take_alert_settings
from .common import fail


def script_name(command: tuple[str, ...]) -> str:
    """What the run is called: the first `.py` file in the command (`train.py`), `-m module`'s module, or the
    program's name."""
    for index, word in enumerate(command):
        if word.endswith(".py"):
            return Path(word).name
        if word == "-m" and index + 1 < len(command):
            return command[index + 1]
    return Path(command[0]).name


@click.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--name", help="The run's name in `ls` and the monitor (default: the script's file name).")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Record the run there instead of the runs folder.")
@click.option("--detach", "-d", "detach", is_flag=True, help="Only start it and print the run's id.")
@click.option("--wait", type=float, default=600.0, show_default=True,
              help="Seconds to wait for the script to reach trainmon.track() (imports, data loading).")
@click.option("--refresh-hz", type=float, default=4.0, show_default=True, help="TUI: how often counters redraw.")
@alert_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def exec_command(command: tuple[str, ...], name: Optional[str], run_dir: Optional[str], detach: bool, wait: float,
                 refresh_hz: float, **alert_choices: Any) -> None:
    """Run your own training script detached and watch it: `trainmon exec -- python train.py --lr 3e-4`.

    The script must call `trainmon.track()` (or use a trainmon callback): it records into the run
    directory made here ($TRAINMON_RUN_DIR). Its output goes to the run's output.log; it outlives this
    terminal. Exit codes: 0 when the monitor is left or the run ends well, 1 when it failed or the
    script never reached trainmon.track(), 2 for a command that cannot start.
    """
    from trainmon.engine.core.alerts import ENV
    from trainmon.engine.record.rundir import OUTPUT_FILE
    from trainmon.engine.run.session import RUN_DIR_ENV, create_run, discard_run

    from .common import make_run_dir
    from .detached import follow

    alerts = take_alert_settings(alert_choices)  # the script's track() reads them from $TRAINMON_ALERTS
    label = name or script_name(command)
    settings = {"job": label, "tracked": True, "command": list(command),
                **({"alerts": alerts} if alerts is not None else {})}
    rundir = make_run_dir(create_run, {**settings, "target": label}, run_dir)
    fd = os.open(rundir.path / OUTPUT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        extra = {ENV: alerts} if alerts is not None else {}
        process = subprocess.Popen(list(command), env={**os.environ, RUN_DIR_ENV: str(rundir.path), **extra},
                                   stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True,
                                   close_fds=True)
    except OSError as exc:
        discard_run(rundir)
        fail(f"cannot start {shlex.join(command)}: {exc.strerror or exc}")
        return
    finally:
        os.close(fd)
    rundir.update(launcher={"pid": process.pid, "command": list(command)})

    exited: list[int] = []

    def not_ready(exc: Any) -> str:
        code = process.poll()
        exited.extend([] if code is None else [code])
        if code is None:
            return (f"{label} did not start its run (trainmon.track() or a trainmon callback) within {wait:g} s "
                    f"(it goes on: pid {process.pid}; `trainmon attach {rundir.info['id']}` once it does)")
        from trainmon.engine.run.spawn import describe_exit

        return (f"{label} exited ({describe_exit(code)}) before it started its run (trainmon.track() or a "
                f"trainmon callback): nothing to watch")

    if not detach:
        click.echo(f"trainmon: started {shlex.join(command)} (pid {process.pid}); waiting for it to start its run "
                   f"(trainmon.track() or a Lightning / Hugging Face callback) …", err=True)
    code = follow(process, rundir, detach, refresh_hz, new_run=False, timeout=wait, not_ready=not_ready, who="script")
    if exited:  # it never became a run: no clutter in `ls` (its output was shown above)
        discard_run(rundir)
    raise SystemExit(code)
