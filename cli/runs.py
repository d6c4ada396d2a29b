"""Commands on runs that already exist: `attach`, `ls`, `logs`, `stop`. None of them imports torch."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Optional

import click

from trainmon.engine.core import messages as msg
from trainmon.engine.record.event_log import read_timed_events
from trainmon.engine.record.rundir import RunInfo, list_runs, read_run

from .common import fail, resolve_or_fail, run_name, terminal_width


def _connect(run: RunInfo) -> Any:
    from trainmon.engine.control.client import ConnectError, RunClient

    if not run.live or not run.socket_path:
        fail(f"run {run.id} is {run.status.value}: no engine to talk to")
    try:
        return RunClient(run.socket_path)
    except ConnectError as exc:
        fail(f"run {run.id}: {exc}")


def _when(unix: Optional[float]) -> str:
    if unix is None:
        return "-"
    age = time.time() - unix
    if age < 90:
        return f"{max(0, age):.0f}s ago"
    if age < 90 * 60:
        return f"{age / 60:.0f}m ago"
    if age < 36 * 3600:
        return f"{age / 3600:.0f}h ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(unix))


def _row(run: RunInfo) -> dict[str, Any]:
    from trainmon.engine.core.liveness import aged
    from trainmon.engine.core.report import epochs_done

    s = run.snapshot
    phase, phase_seconds, age = aged(s.liveness if s else None, run.status.value, time.time())
    return {
        "id": run.id, "job": run.info.get("job"), "status": run.status.value,
        "phase": phase, "phase_seconds": phase_seconds, "iteration_age": age,  # the heartbeat's (liveness.py)
        "epoch": s.epoch if s else 0, "epochs": s.epochs if s else run.info.get("config", {}).get("epochs"),
        "epochs_done": epochs_done(s) if s else 0,
        "global_step": s.global_step if s else 0, "global_iteration": s.global_iteration if s else 0,
        "started": run.info.get("started"), "started_unix": run.info.get("started_unix"),
        "last_activity_unix": run.last_activity, "pid": run.info.get("pid"), "host": run.info.get("host"),
        "path": str(run.path), "message": run.info.get("message"),
        "alerts": int(run.info.get("alerts") or 0),  # alerts raised (0 for a run from before alerts)
        "ranks": ranks_summary(s.ranks) if s and s.world_size > 1 else None,  # torchrun: min / median / max
    }


def ranks_summary(ranks: Any) -> Optional[dict[str, Any]]:
    """`ls --json`'s `ranks` for a run over several ranks (`RankFigures`): `world_size`, `iteration` and
    `iterations_per_second` as `[min, median, max]` (`None` when unknown), the 3 `slowest` ranks (slowest
    first) and the `hung` ones (engine/core/rank_health.py), so 64 ranks read as easily as 2."""
    from trainmon.engine.core.rank_health import summarize

    summary = summarize([(r.rank, r.global_iteration, r.iterations_per_second) for r in ranks],
                        [r.rank for r in ranks if r.hung])
    if summary is None:
        return None
    return {"world_size": summary.world_size, "iteration": list(summary.iterations),
            "iterations_per_second": list(summary.rates) if summary.rates else None,
            "slowest": list(summary.slowest), "hung": list(summary.hung)}


# `ls` columns, in the order shown; when the terminal is too narrow, DROPPED_FIRST go first, in that order
# (the id already holds the start time and the job's name; the id and the epochs done always stay)
LS_COLUMNS = ("ID", "JOB", "STATUS", "EPOCHS", "STEP", "STARTED", "LAST ACTIVITY")
DROPPED_FIRST = ("STARTED", "JOB", "STEP", "LAST ACTIVITY")
COLUMN_GAP = 2  # a Rich table without a box pads each column by one on either side


def epochs_text(done: int, epochs: Optional[int]) -> str:
    """`6/400 done`: completed epochs of those planned (`6/? done` when unknown), never the current one."""
    from trainmon.engine.core.format import count_of

    return f"{count_of(done, epochs if epochs and epochs >= done else None)} done"


def _ls_cells(r: dict[str, Any]) -> dict[str, str]:
    from trainmon.engine.core.liveness import status_word

    alerts = r.get("alerts") or 0
    hung = (r.get("ranks") or {}).get("hung") or []
    status = status_word(r["status"], r["phase"], r["phase_seconds"])
    if hung and r["status"] == "running":  # torchrun: the ranks the others wait for
        status += f" (rank {' '.join(map(str, hung[:3]))}{' …' if len(hung) > 3 else ''} hung)"
    if alerts:
        status += f" ({alerts} alert{'s' if alerts > 1 else ''})"
    return {"ID": r["id"], "JOB": str(r["job"]), "STATUS": status,
            "EPOCHS": epochs_text(r["epochs_done"], r["epochs"]),
            "STEP": str(r["global_step"]),
            "STARTED": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started_unix"] or 0)),
            "LAST ACTIVITY": _when(r["last_activity_unix"])}


def ls_columns(cells: list[dict[str, str]], width: Optional[int]) -> list[str]:
    """The columns that fit in `width` characters (all of them when `width` is None: a pipe or a file),
    dropping DROPPED_FIRST in order; the id is never cut (it is what `attach` and `logs` take)."""
    widths = {name: max([len(name), *(len(c[name]) for c in cells)]) for name in LS_COLUMNS}
    shown = list(LS_COLUMNS)
    for name in DROPPED_FIRST:
        if width is None or sum(widths[c] for c in shown) + COLUMN_GAP * (len(shown) - 1) <= width:
            break
        shown.remove(name)
    return shown


@click.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of runs, for scripts.")
def ls(as_json: bool) -> None:
    """List your runs, oldest first: id, job, status, epochs done, global step, start, last activity.

    EPOCHS counts completed epochs (`6/400 done`: a run stopped in epoch 7 has done 6). A narrow
    terminal drops STARTED, then JOB, STEP and LAST ACTIVITY; the id is always whole. A run whose
    engine died without a final event shows as `lost`; a running one with no iteration for its stall
    threshold as `stalled 4m12s` (`--json`: `phase`, `phase_seconds`, `iteration_age` in seconds).
    """
    rows = [_row(run) for run in list_runs()]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        from trainmon.engine.record.paths import runs_root

        click.echo(f"no runs under {runs_root()}", err=True)
        return
    from rich.console import Console
    from rich.table import Table

    cells = [_ls_cells(r) for r in rows]
    width = terminal_width()
    shown = ls_columns(cells, width)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in shown:  # the id folds (whole characters) only where even it alone does not fit
        table.add_column(name, no_wrap=name != "ID", overflow="fold" if name == "ID" else "ellipsis")
    for c in cells:
        table.add_row(*(c[name] for name in shown))
    tty = sys.stdout.isatty()
    Console(width=width or 1000, no_color=not tty, highlight=False, soft_wrap=False).print(table)


@click.command()
@click.argument("run", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
@click.option("-o", "--output", "job_output", is_flag=True,
              help="The job's own output (its prints, stderr) instead: progress lines as their last state.")
@click.option("--rank", type=int, help="With --output: one rank's output (default: every rank, folded).")
@click.option("--raw", is_flag=True, help="With --output: the bytes as recorded (\\r, escape codes and all).")
def logs(run: Optional[str], follow: bool, job_output: bool, rank: Optional[int], raw: bool) -> None:
    """Print a run's key=value lines (the headless format, each ending in the `time=` it was recorded
    at); RUN is an id, a prefix or a path. With --output, the job's own output as recorded instead.

    Without RUN: the newest live run, or the newest run when none is live.
    """
    from trainmon.engine.core.format import timed
    from trainmon.engine.core.report import event_line

    from .headless import HeadlessPrinter

    info = resolve_or_fail(run, live_only=False)
    if job_output:
        from .output_logs import print_output

        return print_output(info, follow, rank, raw)
    if rank is not None or raw:
        fail("--rank and --raw go with --output (the job's own output)")
    last_seq = nonfinite = 0
    for seq, when, event in read_timed_events(info.path):
        last_seq = seq
        if isinstance(event, msg.NonFiniteLoss):  # the first few, as headless output printed them
            nonfinite += 1
            if nonfinite > HeadlessPrinter.MAX_NONFINITE_LINES:
                continue
        line = event_line(event)
        if line is not None:  # the time it was recorded at, as headless output printed it then
            click.echo(line if when is None else timed(line, when))
    if not follow:
        if info.status == msg.LOST:
            click.echo(f"lost run={info.id} (the engine died without a final event)")
        return
    if info.live:
        _follow(info, last_seq, nonfinite)
    info = read_run(info.path)
    if info.status == msg.LOST:
        click.echo(f"lost run={info.id} (the engine died without a final event)")


def _follow(info: RunInfo, after_seq: int, nonfinite: int = 0) -> None:
    """Print live lines from the engine's socket (events after `after_seq`, progress every 5 s; `nonfinite`
    non-finite losses were read from the log already)."""
    from trainmon.engine.control.client import ConnectError, RunClient

    from .headless import HeadlessPrinter

    try:
        client = RunClient(info.socket_path)
    except ConnectError:
        return  # it ended between reading the log and connecting
    client.skip_seq = after_seq
    client.subscribe(steering=False)
    printer = HeadlessPrinter()
    printer.nonfinite_lines = nonfinite
    try:
        while True:
            update = client.poll()
            for event in update.events:
                printer(event)
            if update.snapshot is not None:
                printer(update.snapshot)
            if not client.alive and not update.events:
                return
            time.sleep(0.1)
    finally:
        client.close()


@click.command()
@click.argument("run", required=False)
@click.option("--no-wait", is_flag=True, help="Return once the engine accepted the stop, without waiting for the end.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for the run to end.")
def stop(run: Optional[str], no_wait: bool, timeout: float) -> None:
    """Stop a live run after its current iteration (as `q` in the TUI does). Without RUN: the newest live run."""
    info = resolve_or_fail(run, live_only=True)
    client = _connect(info)
    client.subscribe()
    command_id = client.send(msg.Stop())
    deadline = time.monotonic() + timeout
    accepted = False
    try:
        while time.monotonic() < deadline:
            for event in client.poll().events:
                if isinstance(event, msg.CommandAccepted) and event.command.id == command_id and not accepted:
                    accepted = True
                    click.echo(f"stopping run {info.id} after the current iteration", err=True)
                    if no_wait:
                        return
                elif isinstance(event, msg.CommandRejected) and event.command.id == command_id:
                    fail(f"run {info.id} refused to stop: {event.reason}", 1)
                elif isinstance(event, (msg.Finished, msg.Failed)):
                    from trainmon.engine.core.report import event_line

                    click.echo(event_line(event))
                    if not accepted:  # it ended on its own before the stop took effect: nothing left to stop
                        click.echo(f"run {info.id} ended before the stop took effect", err=True)
                    return
            if not client.alive:
                break
            time.sleep(0.05)
    finally:
        client.close()
    final = read_run(info.path)
    if final.status.final:
        click.echo(f"{final.status.value} run={info.id}")
        return
    fail(f"run {info.id} did not end within {timeout:g} s (status {final.status.value})", 1)


@click.command()
@click.argument("run", required=False)
@click.option("--refresh-hz", type=float, default=4.0, show_default=True, help="How often counters redraw (0.5–10).")
@click.option("--read-only", is_flag=True, hidden=True, help="Watch a live run without steering it (trainmon serve).")
def attach(run: Optional[str], refresh_hz: float, read_only: bool) -> None:
    """Open the monitor on a run: live with every control, or read-only once it has ended.

    RUN is an id, a unique prefix of one, its last part, or a path; without it, your newest live run.
    """
    from trainmon.tui.launch import run_viewer
    from trainmon.tui.open_run import open_handle

    if not 0.5 <= refresh_hz <= 10:
        fail(f"refresh rate must be between 0.5 and 10 Hz, got {refresh_hz:g}")
    run = run_name(run)
    if run is None and not any(r.live for r in list_runs()):
        ended = "`trainmon attach ID` opens an ended one read-only" if list_runs() else "`trainmon run` starts one"
        fail(f"no live run to attach to: `trainmon ls` lists your runs, {ended}")
    info = resolve_or_fail(run, live_only=run is None)
    in_browser = os.environ.get("TEXTUAL_DRIVER", "").endswith(":WebDriver")  # a tab of `trainmon serve`
    if not (in_browser or (sys.stdin.isatty() and sys.stdout.isatty())):
        fail("attach needs a terminal; `trainmon logs -f` follows a run as plain lines")
    handle = open_handle(info, read_only=read_only)
    sys.exit(run_viewer(handle, info.id, refresh_hz=refresh_hz, output_log=None, watch_only=read_only))

