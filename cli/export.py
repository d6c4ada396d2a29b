"""`trainmon export`: a run's records (iterations, epochs, changes) as CSV, JSON lines or TensorBoard files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from .common import fail, run_name

FORMATS = ("csv", "jsonl", "tensorboard")


def _check_out(out: Path, force: bool, folder: bool) -> None:
    """Refuse (exit 2, one line) an --out of the wrong kind (a file where a folder goes, or the reverse),
    or one that exists and is not empty, unless `force`."""
    if not out.exists():
        return
    if folder and not out.is_dir():
        fail(f"{out} is a file; this format writes a folder (give a folder for --out)")
    if not folder and out.is_dir():
        fail(f"{out} is a folder; jsonl writes one file (give a file for --out, or - for stdout)")
    if force or (out.is_dir() and not any(out.iterdir())) or (out.is_file() and out.stat().st_size == 0):
        return
    fail(f"{out} exists and is not empty (give another --out, or --force to write into it)")


@click.command()
@click.argument("run", required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="csv: a folder of iterations.csv, epochs.csv and events.csv; jsonl: one JSON object per "
                   "line with a `record` field; tensorboard: a folder of TensorBoard event files.")
@click.option("--out", "out", type=click.Path(), metavar="PATH",
              help="Where to write: a folder for csv and tensorboard (default ./RUN_ID-csv, ./RUN_ID-tensorboard), "
                   "a file for jsonl (default: stdout).")
@click.option("--step", "step_axis", type=click.Choice(("global_iteration", "optimizer_step")),
              default="global_iteration", show_default=True,
              help="TensorBoard's step axis (csv and jsonl carry both columns).")
@click.option("--force", is_flag=True, help="Write into an --out that exists and is not empty (files of the same "
                                            "names are replaced; tensorboard: older event files there are removed).")
def export(run: Optional[str], fmt: str, out: Optional[str], step_axis: str, force: bool) -> None:
    """Export a run's records; RUN is an id, a prefix or a path (default: the newest live run, else the newest).

    Per iteration: global iteration, optimizer step, epoch and loss — the last 10,000 iterations exactly
    (record `iteration`), older ones as the run directory keeps them (record `aggregate`: first and
    last iteration, count, mean, min, max). Per epoch: losses, validation metrics, batch size,
    accumulation, lr, samples seen, memory peaks, global iteration and step. Changes, resumes and
    checkpoints: events.csv, JSON records, TensorBoard text. Works on live runs too (what is recorded so far).
    """
    from trainmon.engine.record.export import read_records
    from trainmon.engine.record.rundir import RunNotFound, resolve_run

    try:
        info = resolve_run(run_name(run), live_only=False)
    except RunNotFound as exc:
        fail(str(exc))
    target = Path(out).expanduser() if out else None
    if fmt == "tensorboard":
        import importlib.util

        from trainmon.engine.record.tensorboard import MISSING

        if importlib.util.find_spec("tensorboard") is None:
            fail(MISSING)
    if target is None and fmt != "jsonl":
        target = Path(f"{info.id}-{fmt}")
    if target is not None and str(target) != "-" and not target.is_char_device():
        _check_out(target, force, folder=fmt != "jsonl")
    records = read_records(info)
    if fmt == "jsonl" and (target is None or str(target) == "-") and sys.stdout is None:
        fail("stdout is closed: give --out FILE")
    try:
        summary = _write(records, fmt, target, step_axis, force)
    except OSError as exc:
        fail(f"cannot write {target or 'to stdout'}: {exc.strerror or exc}")
    click.echo(f"exported run {info.id} ({info.status.value}) to {summary}", err=True)


def _write(records: object, fmt: str, target: Optional[Path], step_axis: str, force: bool) -> str:
    """Write `records` as `fmt`; a one-line summary of what went where."""
    from trainmon.engine.record.export_files import write_csv, write_jsonl

    if fmt == "jsonl":
        if target is None or str(target) == "-":
            count = write_jsonl(records, sys.stdout)
            return f"stdout: {count} lines"
        with open(target, "w") as f:
            count = write_jsonl(records, f)
        return f"{target}: {count} lines"
    if fmt == "csv":
        counts = write_csv(records, target)
        return f"{target}: " + ", ".join(f"{name} {rows} rows" for name, rows in counts.items())
    from trainmon.engine.record.tensorboard import open_writer, write_records

    if force and target.is_dir():
        for old in target.glob("events.out.tfevents.*"):
            old.unlink()
    writer = open_writer(target, step_axis)
    try:
        counts = write_records(writer, records, step_axis)
    finally:
        writer.close()
    return f"{target} (steps: {step_axis}): " + ", ".join(f"{k} {v}" for k, v in counts.items())
