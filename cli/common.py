"""What the `trainmon` commands share: the one-line failure, the run options, the run directory.

Every bad input ends in one line on stderr and exit code 2 (`fail`). No command module imports another
command module's private helpers: what two of them need lives here.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

import click

EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print `trainmon: error: <message>` (one line) to stderr and exit with `code`."""
    click.echo(f"trainmon: error: {message}", err=True)
    sys.exit(code)


def job_option(fn: Callable) -> Callable:
    return click.option("--job", "job_name", default="digits", show_default=True,
                        help="Built-in job: digits or seed-example.")(fn)


def run_options(fn: Callable) -> Callable:
    """The options every run takes (`None` means: the job's default)."""
    options = [
        click.option("--epochs", type=int, help="Epochs to train (job default if omitted)."),
        click.option("--batch-size", type=int, help="Samples per batch (micro-batch)."),
        click.option("--accum", type=int, help="Accumulation steps: micro-batches per optimizer step."),
        click.option("--lr", type=float, help="Learning rate."),
        click.option("--drop-last/--no-drop-last", default=None, help="Drop the last, incomplete batch of each epoch."),
        click.option("--seed", type=int, default=0, show_default=True, help="Random seed (weights, shuffling)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
        click.option("--batch-growth", type=float, help="Batch-size schedule: b_t = b_0 · G^t."),
        click.option("--max-batch-size", type=int, help="Cap for the batch-size schedule."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]),
                     help="fp32 (default), bf16 (autocast) or fp16 (autocast + grad scaler, CUDA)."),
        click.option("--clip-grad-norm", type=float, metavar="X",
                     help="Clip each optimizer step's accumulated gradient to 2-norm X (once per window)."),
        click.option("--val-batch-size", type=int,
                     help="Samples per validation batch (default: the job's, else the training batch size)."),
        click.option("--num-workers", type=int,
                     help="DataLoader worker processes loading batches (0: in the training process)."),
        click.option("--image-size", type=int, help="seed-example only: image side in pixels (default 16)."),
        click.option("--headless", is_flag=True, help="Plain text lines instead of the TUI (automatic without a TTY)."),
        click.option("--refresh-hz", type=float, default=4.0, show_default=True,
                     help="TUI: how often counters redraw (0.5–10); the chart redraws at 1 Hz."),
        click.option("--detach", "-d", "detach", is_flag=True,
                     help="Start the run in the background and print its id (attach later)."),
        click.option("--run-dir", type=click.Path(file_okay=False),
                     help="Record the run in this folder instead of the default runs folder."),
        click.option("--tensorboard", "tensorboard", metavar="DIR", type=click.Path(file_okay=False),
                     help="Also write TensorBoard scalars live into DIR (loss per iteration, epoch records)."),
        *checkpoint_option_list(),
        *launch_option_list(),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def launch_option_list() -> list:
    """Several processes under torchrun (DDP); passed through to `python -m torch.distributed.run`."""
    return [
        click.option("--nproc-per-node", type=int, metavar="N",
                     help="Train in N processes on this machine under torchrun (one per GPU; gloo on the CPU)."),
        click.option("--nnodes", metavar="N", help="torchrun: machines taking part (with --rdzv-endpoint)."),
        click.option("--node-rank", type=int, metavar="R", help="torchrun: this machine's rank among them."),
        click.option("--rdzv-endpoint", metavar="HOST:PORT", help="torchrun: the rendezvous address."),
    ]


def checkpoint_option_list() -> list:
    """The checkpoint options of `trainmon`, `trainmon run` and `trainmon resume`."""
    return [
        click.option("--checkpoint-every", type=int, metavar="N",
                     help="Save a checkpoint at the end of every N-th epoch (default 1; 0: never at epoch ends)."),
        click.option("--checkpoint-minutes", type=float, metavar="M",
                     help="Also save every M minutes, mid-epoch at a safe point (for long epochs)."),
        click.option("--keep-checkpoints", type=int, metavar="K",
                     help="Keep the newest K checkpoints (default 2) plus the best by validation loss."),
        click.option("--checkpoints/--no-checkpoints", "checkpoints", default=None,
                     help="Save checkpoints (default) or none at all."),
    ]


def terminal_width() -> Optional[int]:
    """`$COLUMNS` when set, else the terminal's width; None for a pipe or a file (every column, never cut)."""
    import shutil

    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def wants_headless(flag: bool) -> bool:
    """Headless when asked, when stdout is not a terminal, or when TERM=dumb."""
    return flag or not sys.stdout.isatty() or os.environ.get("TERM", "") == "dumb"


def run_settings(job_name: str, image_size: Optional[int], seed: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """What a run directory records of the user's request (the engine rebuilds the run from it)."""
    from trainmon.engine.jobs.loader import absolute_target

    return {"job": job_name, "target": absolute_target(job_name), "image_size": image_size, "seed": seed,
            "options": overrides}


def tensorboard_dir(path: str) -> str:
    """`--tensorboard DIR` as an absolute path (the detached engine runs elsewhere); exits 2 with one
    line when the tensorboard package is missing."""
    import importlib.util

    from trainmon.engine.record.tensorboard import MISSING

    if not path.strip():
        fail("--tensorboard needs a folder path")
    if importlib.util.find_spec("tensorboard") is None:
        fail(MISSING)
    return os.path.abspath(os.path.expanduser(path))


def make_run_dir(create_run: Callable, settings: dict, run_dir: Optional[str]) -> Any:
    try:
        return create_run(settings["target"], settings, run_dir)
    except OSError as exc:  # exists and not empty, not ours, not creatable (/proc/x), a file in the way...
        where = run_dir or "the runs folder"
        fail(f"cannot create run directory {where}: {exc.strerror or exc}" if exc.strerror else str(exc))


def run_name(what: Optional[str]) -> Optional[str]:
    """A RUN argument as given (spaces around it dropped), `None` when none was given. An empty one (an unset
    shell variable: `trainmon stop "$ID"`) exits 2 with one line: taken as none, it would mean your newest
    run."""
    if what is None:
        return None
    if not what.strip():
        fail("an empty run id: give an id, a unique prefix of one, its last part or a run directory "
             "(or nothing: your newest run)")
    return what.strip()


def resolve_or_fail(what: Optional[str], live_only: bool) -> Any:
    """The run named by `what` (an id, a prefix, a path; see `run_name`): `engine.runs`' `RunInfo`. Exits 2
    with one line when there is none."""
    from trainmon.engine.record.rundir import RunNotFound, resolve_run

    what = run_name(what)
    try:
        return resolve_run(what, live_only=live_only)
    except RunNotFound as exc:
        fail(str(exc))
