"""`trainmon lesson [FILE]`: a guided lesson on a real run of a job, or its handout off a terminal."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

import click

from trainmon.engine.core.arithmetic import PlanError
from trainmon.engine.core.lesson import LessonSettings, NoteError, Stop, lesson_stops
from trainmon.engine.core.lesson_file import LessonFile, LessonFileError, plan_error_key, read_lesson

from .common import fail, wants_headless


@dataclass(frozen=True)
class Lesson:
    """A lesson ready to give: its file's settings, the job's numbers, the stops and a title line."""

    file: LessonFile
    settings: LessonSettings
    stops: list[Stop]
    title: str


def load_lesson(path: Optional[str]) -> Lesson:
    """The lesson of the file at `path` (the default lesson for `None`), its job built to count its
    samples. Exits 2 with one line (`FILE: KEY: why`) for a bad file, a job that cannot be built or
    settings the job's training set cannot run."""
    name = path or "the default lesson"
    try:
        file = read_lesson(path) if path else LessonFile()
    except LessonFileError as exc:
        fail(str(exc))
    try:
        from trainmon.engine.jobs import JobSpec
        from trainmon.engine.jobs.job import dataset_length
        from trainmon.engine.jobs.loader import absolute_target

        job = JobSpec(absolute_target(file.job), seed=file.seed).build()
    except PlanError as exc:
        fail(f"{name}: job: {exc}")
    samples = dataset_length(job.train_dataset)
    if samples is None:
        fail(f"{name}: job: a lesson needs a training set with a length (this one has no __len__)")
    batch_size = file.batch_size or job.batch_size
    if batch_size > samples and not file.drop_last:  # with drop_last the plan refuses it (no batches at all)
        fail(f"{name}: batch_size: batch size {batch_size} is larger than the {samples} samples of the training set: "
             "an epoch would be one short batch")
    settings = LessonSettings(samples=samples, batch_size=batch_size, accum=file.accum, epochs=file.epochs,
                              drop_last=file.drop_last, validation=job.val_dataset is not None)
    try:
        stops = lesson_stops(settings, questions=file.questions, notes=file.notes)
    except NoteError as exc:
        fail(f"{name}: stop[{exc.index}].where: {exc}")
    except PlanError as exc:
        fail(f"{name}: {plan_error_key(str(exc))}: {exc}")
    epochs = f"{file.epochs} epoch" + ("" if file.epochs == 1 else "s")
    title = (f"trainmon lesson: {file.job}, {samples} samples, batch size {batch_size}, accumulation {file.accum}, "
             f"{epochs}" + (", drop_last" if file.drop_last else ""))
    return Lesson(file, settings, stops, title)


@click.command("lesson")
@click.argument("file", required=False)
@click.option("--headless", is_flag=True, help="Print the handout as plain text (automatic without a TTY).")
def lesson(file: Optional[str], headless: bool) -> None:
    """A guided lesson on a real run: each stop of an epoch lit up with its exact numbers.

    FILE is a lesson file (TOML: job, batch_size, accum, epochs, drop_last, seed, questions, [[stop]]
    where/say); without one, the textbook lesson: seed-example (1000 samples, batch size 64) with
    accumulation 4. In a terminal: n, space or → advance, b goes back, a plays on, q quits. Piped or
    with --headless: the handout, every stop in order.
    """
    given = load_lesson(file)
    if wants_headless(headless) and not served_in_a_browser():
        from .lesson_view import handout

        click.echo(handout(given.title, given.stops))
        return
    import subprocess

    from trainmon.tui.lesson.launch import run_lesson

    process, rundir, client = start_lesson_run(given)
    code = run_lesson(client, given.stops, given.title, given.settings)
    try:
        process.wait(timeout=30)  # the engine stops after its current iteration and records the run
    except subprocess.TimeoutExpired:
        click.echo(f"trainmon: the lesson's run {rundir.info['id']} is still stopping", err=True)
    raise SystemExit(code)


def served_in_a_browser() -> bool:
    """A tab of `trainmon serve --lesson`: textual-serve runs us on a pipe with its web driver set."""
    return "web_driver" in os.environ.get("TEXTUAL_DRIVER", "")


def serve_lesson(file: Optional[str], host: str, port: int, read_only: bool, make_server: Callable) -> None:
    """`trainmon serve --lesson [FILE]`: each browser tab runs `trainmon lesson FILE` (a run of its own).
    The file is checked first (one line, exit 2); a lesson is steered by its viewer, so a read-only
    serve is refused."""
    import secrets
    import shlex
    import sys

    if read_only:
        fail("a lesson is steered from its tab: serve it on loopback, or add --allow-control")
    load_lesson(file)
    argv = [sys.executable, "-c", "from trainmon.cli.main import main; main()", "lesson"]
    if file:
        argv.append(os.path.abspath(file))
    token = secrets.token_urlsafe(24)
    server = make_server(shlex.join(argv), host, port, token, title="trainmon lesson")
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"serving trainmon lesson{' ' + file if file else ''} on http://{shown}:{port}/?token={token}",
               err=True)
    try:
        server.serve()
    except OSError as exc:  # lost the race for the port, or the address went away
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def start_lesson_run(given: Lesson, run_dir: Optional[str] = None) -> tuple:
    """Start the lesson's job in a detached engine that waits, paused, before its first iteration; returns
    `(process, run directory, subscribed RunClient)`. Exits 1 with one line when the engine never opens
    its socket. No checkpoints: a lesson is about the counting."""
    from trainmon.engine.control.client import ConnectError, RunClient
    from trainmon.engine.run.session import create_run
    from trainmon.engine.run.spawn import spawn_engine, wait_for_socket

    from .common import make_run_dir, run_settings

    file = given.file
    options = {"batch_size": given.settings.batch_size, "accum": file.accum, "epochs": file.epochs,
               "drop_last": file.drop_last, "checkpoints": False}
    settings = {**run_settings(file.job, None, file.seed, options), "start_paused": True}
    rundir = make_run_dir(create_run, settings, run_dir)
    process = spawn_engine(rundir)
    try:
        wait_for_socket(rundir.info["socket"], process)
        client = RunClient(rundir.info["socket"])
    except (RuntimeError, ConnectError) as exc:
        fail(str(exc), 1)
    client.subscribe()
    return process, rundir, client
