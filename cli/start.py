"""Starting a run from the command line: in this terminal (headless), detached with the TUI, or as
torchrun's ranks.

Exit codes: 0 finished, 1 failed, 2 refused (one line), 130 after Ctrl+C, 143 after SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Optional

import click

from trainmon.engine.core.arithmetic import PlanError

from .common import EXIT_USAGE, fail, make_run_dir, run_settings, tensorboard_dir, wants_headless


def run_headless(job: Any, config: Any, rundir: Any, warnings: tuple[str, ...] = (), resume: Any = None,
                 distributed: Any = None) -> int:
    """Train in this thread, printing key=value lines, recorded in `rundir` and attachable; returns
    the exit code: 0 finished, 1 failed while training, 2 refused on the first batch of an
    IterableDataset, 130 after Ctrl+C, 143 after SIGTERM. stdout always ends with a `finished ...`, `stopped ...`
    or `failed ...` line; `warnings` (from the preflight) become `warning ...` lines first."""
    from trainmon.engine.control.channel import Channel
    from trainmon.engine.core import messages as msg
    from trainmon.engine.run.session import EngineSession, exit_code

    from .headless import HeadlessPrinter

    if resume is not None:
        from trainmon.engine.run.distributed_launch import resume_refusal

        refusal = resume_refusal(rundir.info, rundir.path)
        if refusal:
            fail(refusal)
    printer = HeadlessPrinter()
    channel = Channel.listener_only(printer)
    session = EngineSession(rundir, channel)
    if resume is not None:  # `trainmon resume --headless`: the run goes on in its own directory
        try:
            session.resuming()
        except BlockingIOError:
            fail(f"run {rundir.info.get('id')} is being resumed by another process already")
    session.start()
    printer.out = session.terminal()  # trainmon's lines to the terminal only; the job's prints are captured
    printer.print_line(f"run id={session.run_id} dir={rundir.path}")
    interrupted = []

    def on_interrupt(signum: int, frame: Any) -> None:
        """First Ctrl+C: stop after the current iteration (counters stay consistent). Second: abort."""
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(signum)
        channel.request_stop()  # lock-free: this runs on the main thread, maybe inside the loop's queue calls
        os.write(2, b"trainmon: stopping after the current iteration (Ctrl+C again to abort)\n")

    def on_terminate(signum: int, frame: Any) -> None:
        """SIGTERM (a scheduler, `kill`), SIGHUP (the terminal closed) or SIGPIPE (our reader went away):
        stop after the current iteration, save a checkpoint and record the run as stopped (exit 143 /
        129 / 141); a second one aborts."""
        if any(sig != signal.SIGINT for sig in interrupted):
            raise KeyboardInterrupt
        interrupted.append(signum)
        channel.request_stop()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    previous_term = signal.signal(signal.SIGTERM, on_terminate)
    previous_hup = signal.signal(signal.SIGHUP, on_terminate)
    # the reader of our lines went away (`trainmon --headless | head -3`): stop and save like SIGHUP, exit 141
    previous_pipe = signal.signal(signal.SIGPIPE, on_terminate)
    code = 1
    try:
        if distributed is None:
            result = session.train(job, config, warnings, resume=resume)
        else:  # rank 0 of a torchrun run
            result = session.train_rank0(distributed, job, config, warnings)
        if isinstance(result, msg.Failed):
            click.echo(f"trainmon: run failed: {result.message}", err=True)
            if result.user_traceback:
                click.echo(result.user_traceback.rstrip(), err=True)
        code = exit_code(result, interrupted)
    except KeyboardInterrupt:
        click.echo("trainmon: aborted", err=True)
        code = 128 + (interrupted[0] if interrupted else signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGHUP, previous_hup)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # the job's last output and our last lines may meet a
        session.close(code)  # closed pipe while the capture stops: EPIPE there (handled), not death by SIGPIPE
        reader_gone = printer.closed or signal.SIGPIPE in interrupted
        if not reader_gone:
            signal.signal(signal.SIGPIPE, previous_pipe)
        # else SIGPIPE stays ignored to the end: a capture thread still copying (a loaded box) meets EPIPE, and
        # nothing more can reach the reader: Python's exit flush goes to /dev/null, quietly
        if reader_gone:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    return code


def start_run(job_name: str, image_size: Optional[int], headless: bool, seed: int, refresh_hz: float,
              detach: bool = False, run_dir: Optional[str] = None, **overrides: Any) -> None:
    """Headless: check everything, then train in this process. Otherwise start the detached engine
    and open the TUI on it (or, with `detach`, print the run's id). Exits with the run's code."""
    from trainmon.engine.run.session import create_run

    if not 0.5 <= refresh_hz <= 10:
        fail(f"refresh rate must be between 0.5 and 10 Hz, got {refresh_hz:g}")
    if headless and detach:
        fail("choose --headless (train in this terminal) or --detach (in the background), not both")
    if run_dir is not None and not run_dir.strip():
        fail("--run-dir needs a folder path")
    tensorboard = overrides.pop("tensorboard", None)  # not a RunConfig field: the engine session reads it
    from .alert_options import take_alert_settings

    alerts = take_alert_settings(overrides)  # $TRAINMON_ALERTS for this process, the engine and the ranks
    from trainmon.engine.run.distributed import RankEnv
    from trainmon.engine.run.distributed_launch import LAUNCH_OPTIONS

    launch = {key: overrides.pop(key, None) for key in LAUNCH_OPTIONS}
    env = RankEnv.from_env()
    launch_error = check_launch(launch, env, wants_headless(headless) and not detach)
    if launch_error:
        fail(launch_error)
    settings = run_settings(job_name, image_size, seed, overrides)
    if tensorboard is not None:
        settings["options"] = {**overrides, "tensorboard": tensorboard_dir(tensorboard)}
    if alerts is not None:
        from trainmon.engine.core.alerts import ENV

        os.environ[ENV] = settings["alerts"] = alerts  # run.json keeps them for `trainmon resume`
    if env is not None:  # a rank that torchrun started: headless, rank 0 recording the run
        sys.exit(run_rank_headless(env, job_name, image_size, seed, overrides, settings, run_dir))
    if launch["nproc_per_node"] is not None:
        settings["launch"] = launch
        if wants_headless(headless) and not detach:  # torchrun in the foreground, rank 0's lines only
            from trainmon.engine.jobs.run_setup import prepare_run
            from trainmon.engine.run.distributed_launch import check_plan, torchrun_command

            nnodes = str(launch["nnodes"] or 1)
            try:  # refused here in one line, not by every rank under torchrun
                _spec, job, config, _warnings = prepare_run(job_name, image_size, seed, **overrides)
                check_plan(job, config, launch["nproc_per_node"] * (int(nnodes) if nnodes.isdigit() else 1))
            except PlanError as exc:
                fail(str(exc))
            del job

            ranks_args = (["run"] if sys.argv[1:2] == ["run"] else []) + rank_argv(sys.argv[1:])
            sys.exit(run_torchrun(torchrun_command(launch, "trainmon", ranks_args, only_rank0_output=True)))
    if wants_headless(headless) and not detach:
        from trainmon.engine.jobs.run_setup import prepare_run

        try:
            _spec, job, config, warnings = prepare_run(job_name, image_size, seed, **overrides)
        except PlanError as exc:
            fail(str(exc))
        sys.exit(run_headless(job, config, make_run_dir(create_run, settings, run_dir), tuple(warnings)))
    rundir = make_run_dir(create_run, settings, run_dir)
    from .detached import run_detached

    sys.exit(run_detached(rundir, detach=detach, refresh_hz=refresh_hz))


def check_launch(launch: dict, env: Any, headless: bool = True) -> Optional[str]:
    """Why the torchrun options `launch` cannot be taken (one line), or `None`. `headless`: this command
    trains in the foreground (another node's ranks must: rank 0, on node 0, records and serves the run)."""
    nproc = launch["nproc_per_node"]
    if env is not None and any(v is not None for v in launch.values()):
        return "--nproc-per-node and the other torchrun options are torchrun's: not inside a torchrun job"
    if nproc is None:
        if any(v is not None for v in launch.values()):
            return "--nnodes, --node-rank and --rdzv-endpoint go with --nproc-per-node N"
        return None
    if nproc < 1:
        return f"--nproc-per-node must be 1 or more, got {nproc}"
    if str(launch["nnodes"] or "1") not in ("1", "1:1") and not launch["rdzv_endpoint"]:
        return (f"--nnodes {launch['nnodes']}: give --rdzv-endpoint HOST:PORT (node 0's address) on every machine, "
                f"else torchrun waits for the other machines forever")
    if launch["node_rank"] and not headless:
        return (f"--node-rank {launch['node_rank']}: add --headless on every machine but node 0 (rank 0, on node 0, "
                f"records the run and serves viewers)")
    return None


def rank_argv(argv: list[str]) -> list[str]:
    """`argv` after the command (`run`, if any) without the torchrun options (each rank runs the rest)
    and with `--headless`: what every rank's `trainmon` is given."""
    names = {"--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-endpoint"}
    out, skip = [], False
    rest = argv[1:] if argv[:1] == ["run"] else argv
    for arg in rest:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif arg.split("=", 1)[0] in names:
            continue
        else:
            out.append(arg)
    return out + ([] if "--headless" in out else ["--headless"])


def run_torchrun(command: list[str]) -> int:
    """Run torchrun in the foreground but in a session of its own, so that Ctrl+C (SIGINT), SIGTERM or
    SIGHUP reach the ranks, not torchrun's agent (which would end them at once): the first one is passed
    to every rank, which stop together at their next agreement and save; a second one ends torchrun.
    The exit code: 128 + the first signal after a clean stop, else torchrun's."""
    import subprocess

    import psutil

    process = subprocess.Popen(command, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        if received:
            os.killpg(process.pid, signal.SIGTERM)
            return
        received.append(signum)
        for rank in psutil.Process(process.pid).children():
            try:
                rank.send_signal(signal.SIGINT)
            except psutil.Error:
                pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        code = process.wait()
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # nothing of the run outlives this command
        except ProcessLookupError:
            pass
    return 128 + received[0] if received and code == 0 else code


def run_rank_headless(env: Any, job_name: str, image_size: Optional[int], seed: int, overrides: dict,
                      settings: dict, run_dir: Optional[str]) -> int:
    """This process is one rank of a torchrun job: build and check the job, join the process group;
    rank 0 creates the run directory (its path shared with the others) and prints the run's lines,
    the others train quietly. The exit code, as `run_headless`'s."""
    from trainmon.engine.jobs.run_setup import prepare_run
    from trainmon.engine.record.rank_failures import failure_dir
    from trainmon.engine.run.distributed import Distributed
    from trainmon.engine.run.distributed_launch import check_plan, run_follower
    from trainmon.engine.run.session import create_run

    try:
        _spec, job, config, warnings = prepare_run(job_name, image_size, seed, **overrides)
        check_plan(job, config, env.world_size)
    except PlanError as exc:
        if env.rank != 0:
            return EXIT_USAGE
        fail(str(exc))
    dist = Distributed.start(env, config.device)
    if env.rank != 0:
        shared = dist.share_text("")
        dist.failure_dir = str(failure_dir(shared))
        return rank_exit(run_follower(job, config, dist, run_dir=shared))
    rundir = make_run_dir(create_run, settings, run_dir)
    dist.share_text(str(rundir.path))
    return rank_exit(run_headless(job, config, rundir, tuple(warnings), distributed=dist))


def rank_exit(code: int) -> int:
    """A rank's exit code for torchrun: a stop asked by a signal (130, 143, 129) is a clean end (0), not a
    failure that torchrun would report with a traceback; run.json keeps the run's own code."""
    return 0 if code in (128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGHUP) else code
