"""`trainmon resume`: a stopped, preempted, crashed or killed run goes on from its newest checkpoint,
in its own run directory (the history, the event log and the chart go on)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import click

from .common import checkpoint_option_list, fail, run_name, wants_headless
from .start import run_headless


def _options(fn: Any) -> Any:
    for option in reversed(checkpoint_option_list()):
        fn = option(fn)
    return fn


def pick_run(what: Optional[str], finished_too: bool = False) -> Any:
    """The run to resume: `what` (an id, a prefix or a path), or the newest run that ended without
    finishing (stopped, failed or lost; `finished_too`: or finished) and has checkpoints. Exits 2 with
    one line when there is none."""
    from trainmon.engine.core import messages as msg
    from trainmon.engine.record.checkpoint_files import CHECKPOINT_DIR
    from trainmon.engine.record.rundir import RunNotFound, list_runs, resolve_run

    what = run_name(what)
    if what:
        try:
            return resolve_run(what, live_only=False)
        except RunNotFound as exc:
            fail(str(exc))
    candidates = [r for r in list_runs() if not r.live and (finished_too or r.status != msg.FINISHED)
                  and (r.path / CHECKPOINT_DIR).is_dir()]
    if not candidates:
        fail("no stopped run with checkpoints to resume (see `trainmon ls`; a finished run resumes with its id "
             "and --epochs)")
    return candidates[-1]


@click.command()
@click.argument("run", required=False)
@click.option("--epochs", type=int, help="Epochs in all (more than the run had: it trains on after the end).")
@click.option("--batch-size", type=int, help="A new batch size from the next epoch start, like a pending change.")
@click.option("--accum", type=int, help="New accumulation steps from the next window start, like a pending change.")
@click.option("--seed", type=int, help="Refused unless it is the run's own seed (another would break exactness).")
@_options
@click.option("--headless", is_flag=True, help="Plain text lines instead of the TUI (automatic without a TTY).")
@click.option("--detach", "-d", "detach", is_flag=True, help="Go on in the background and print the run's id.")
@click.option("--refresh-hz", type=float, default=4.0, show_default=True,
              help="TUI: how often counters redraw (0.5–10).")
def resume(run: Optional[str], epochs: Optional[int], batch_size: Optional[int], accum: Optional[int],
           seed: Optional[int], headless: bool, detach: bool, refresh_hz: float, **checkpoint_options: Any) -> None:
    """Go on with a run from its newest readable checkpoint (default: the newest stopped run).

    The run keeps its directory, id, history and chart; training goes on at the same global
    iteration, in the same data order, as if it had never stopped. Exit codes as for a run; 2 when
    the checkpoint does not fit the job any more (one line naming the mismatch).
    """
    from trainmon.engine.core.arithmetic import PlanError
    from trainmon.engine.record.checkpoint_files import CheckpointError
    from trainmon.engine.record.rundir import RunDirectory

    if not 0.5 <= refresh_hz <= 10:
        fail(f"refresh rate must be between 0.5 and 10 Hz, got {refresh_hz:g}")
    if headless and detach:
        fail("choose --headless (train in this terminal) or --detach (in the background), not both")
    info = pick_run(run, finished_too=epochs is not None)  # --epochs: a finished run may train on
    if run is None:
        click.echo(f"trainmon: resuming run {info.id} (your newest {info.status.value} run with checkpoints)", err=True)
    if info.live:
        fail(f"run {info.id} is still running: `trainmon attach {info.id}` to watch it")
    settings = info.info.get("settings") or {}
    if "target" not in settings:
        fail(f"run {info.id} records no job to rebuild (made by an older trainmon?)")
    recorded_seed = settings.get("seed", 0)
    if seed is not None and seed != recorded_seed:
        fail(f"--seed {seed} would break exactness: run {info.id} trained with seed {recorded_seed}")
    request = {"epochs": epochs, "batch_size": batch_size, "accum": accum,
               **{k: v for k, v in checkpoint_options.items()}}
    request = {k: v for k, v in request.items() if v is not None}
    # check everything here first (job, checkpoint, fit): a refusal is one line and leaves the run as it was
    from trainmon.engine.run.resume import prepare_resume

    try:
        job, config, warnings, resume_from = prepare_resume(info.path, settings, run_id=info.id, **request)
    except (PlanError, CheckpointError) as exc:
        fail(str(exc))
    for line in resume_from.skipped:
        click.echo(f"trainmon: skipped checkpoint {line}", err=True)
    rundir = RunDirectory.open(info.path)
    if wants_headless(headless) and not detach:
        if settings.get("alerts"):  # the run's own alert options (`--on-alert`...) go on with it
            from trainmon.engine.core.alerts import ENV

            os.environ[ENV] = settings["alerts"]
        sys.exit(run_headless(job, config, rundir, tuple(warnings), resume=resume_from))
    del job, resume_from  # the detached engine loads them again in its own process
    from .detached import run_detached

    rundir.update(resume_request=request)
    if info.socket_path:  # a killed engine leaves its socket file: the new engine's must be the one found
        Path(info.socket_path).unlink(missing_ok=True)
    sys.exit(run_detached(rundir, detach=detach, refresh_hz=refresh_hz, new_run=False))
