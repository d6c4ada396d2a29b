"""The `trainmon` command: the monitor (TUI or headless), `plan`, and friends.

Every bad input ends in one line on stderr and exit code 2; a failed run exits 1; a run stopped by
Ctrl+C exits 130, by SIGTERM 143.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any, Callable, Optional

import click

from trainmon.engine.arithmetic import PlanError

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


def wants_headless(flag: bool) -> bool:
    """Headless when asked, when stdout is not a terminal, or when TERM=dumb."""
    return flag or not sys.stdout.isatty() or os.environ.get("TERM", "") == "dumb"


def run_settings(job_name: str, image_size: Optional[int], seed: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """What a run directory records of the user's request (the engine rebuilds the run from it)."""
    from trainmon.engine.jobs.loader import absolute_target

    return {"job": job_name, "target": absolute_target(job_name), "image_size": image_size, "seed": seed,
            "options": overrides}


def run_headless(job: Any, config: Any, rundir: Any, warnings: tuple[str, ...] = (), resume: Any = None,
                 distributed: Any = None) -> int:
    """Train in this thread, printing key=value lines, recorded in `rundir` and attachable; returns
    the exit code: 0 finished, 1 failed while training, 2 refused on the first batch of an
    IterableDataset, 130 after Ctrl+C, 143 after SIGTERM. stdout always ends with a `finished ...`, `stopped ...`
    or `failed ...` line; `warnings` (from the preflight) become `warning ...` lines first."""
    from trainmon.engine import messages as msg
    from trainmon.engine.channel import Channel
    from trainmon.engine.session import EngineSession, exit_code

    from .headless import HeadlessPrinter

    if resume is not None:
        from trainmon.engine.distributed_run import resume_refusal

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
        signal.signal(signal.SIGPIPE, previous_pipe)
        session.close(code)
        if printer.closed:  # nothing more can reach the reader; keep Python's exit flush quiet
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    return code


def start_run(job_name: str, image_size: Optional[int], headless: bool, seed: int, refresh_hz: float,
              detach: bool = False, run_dir: Optional[str] = None, **overrides: Any) -> None:
    """Headless: check everything, then train in this process. Otherwise start the detached engine
    and open the TUI on it (or, with `detach`, print the run's id). Exits with the run's code."""
    from trainmon.engine.session import create_run

    if not 0.5 <= refresh_hz <= 10:
        fail(f"refresh rate must be between 0.5 and 10 Hz, got {refresh_hz:g}")
    if headless and detach:
        fail("choose --headless (train in this terminal) or --detach (in the background), not both")
    if run_dir is not None and not run_dir.strip():
        fail("--run-dir needs a folder path")
    tensorboard = overrides.pop("tensorboard", None)  # not a RunConfig field: the engine session reads it
    from trainmon.engine.distributed import RankEnv
    from trainmon.engine.distributed_run import LAUNCH_OPTIONS

    launch = {key: overrides.pop(key, None) for key in LAUNCH_OPTIONS}
    env = RankEnv.from_env()
    launch_error = check_launch(launch, env, wants_headless(headless) and not detach)
    if launch_error:
        fail(launch_error)
    settings = run_settings(job_name, image_size, seed, overrides)
    if tensorboard is not None:
        settings["options"] = {**overrides, "tensorboard": tensorboard_dir(tensorboard)}
    if env is not None:  # a rank that torchrun started: headless, rank 0 recording the run
        sys.exit(run_rank_headless(env, job_name, image_size, seed, overrides, settings, run_dir))
    if launch["nproc_per_node"] is not None:
        settings["launch"] = launch
        if wants_headless(headless) and not detach:  # torchrun in the foreground, rank 0's lines only
            from trainmon.engine.distributed_run import check_plan, torchrun_command
            from trainmon.engine.prepare import prepare_run

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
        from trainmon.engine.prepare import prepare_run

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
    from trainmon.engine.distributed import Distributed
    from trainmon.engine.distributed_run import check_plan, run_follower
    from trainmon.engine.prepare import prepare_run
    from trainmon.engine.rank_failures import failure_dir
    from trainmon.engine.session import create_run

    try:
        _spec, job, config, warnings = prepare_run(job_name, image_size, seed, **overrides)
        check_plan(job, config, env.world_size)
    except PlanError as exc:
        if env.rank != 0:
            return EXIT_USAGE
        fail(str(exc))
    dist = Distributed.start(env, config.device)
    if env.rank != 0:
        dist.failure_dir = str(failure_dir(dist.share_text("")))
        return rank_exit(run_follower(job, config, dist))
    rundir = make_run_dir(create_run, settings, run_dir)
    dist.share_text(str(rundir.path))
    return rank_exit(run_headless(job, config, rundir, tuple(warnings), distributed=dist))


def rank_exit(code: int) -> int:
    """A rank's exit code for torchrun: a stop asked by a signal (130, 143, 129) is a clean end (0), not a
    failure that torchrun would report with a traceback; run.json keeps the run's own code."""
    return 0 if code in (128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGHUP) else code


def tensorboard_dir(path: str) -> str:
    """`--tensorboard DIR` as an absolute path (the detached engine runs elsewhere); exits 2 with one
    line when the tensorboard package is missing."""
    import importlib.util

    from trainmon.engine.tensorboard_out import MISSING

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


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@job_option
@run_options
@click.pass_context
def cli(ctx: click.Context, **options: Any) -> None:
    """trainmon: train a PyTorch model and watch it live — epochs, iterations, steps, accumulation, loss.

    With no command, trains the chosen built-in job (default: digits) in the terminal UI, or as
    plain lines with --headless / without a TTY. `trainmon run my_job.py` trains your own job.
    """
    if ctx.invoked_subcommand is None:
        start_run(**options)
    elif any(ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT,
                                                     click.core.ParameterSource.DEFAULT_MAP) for name in options):
        fail(f"options before '{ctx.invoked_subcommand}' are run options; put command options after the command")


@cli.command("run")
@click.argument("target", metavar="FILE_OR_MODULE")
@run_options
def run_command(target: str, **options: Any) -> None:
    """Train your own job: FILE.py[:FUNCTION] or package.module[:ATTRIBUTE] returning a trainmon Job.

    Without a name, the file's job(), make_job() or get_job() is used. The options override the
    job's defaults.
    """
    start_run(target, **options)


@cli.command()
@click.option("--samples", type=int, help="Samples in the training set (m).")
@click.option("--job", "job_name", help="Take the sample count, and the default batch size, accum and epochs, from "
                                          "this job (built-in name or FILE.py) instead.")
@click.option("--batch-size", type=int, help="Batch size b (of the first epoch); required with --samples, "
                                             "the job's by default with --job.")
@click.option("--accum", type=int, help="Accumulation steps k (default 1, or the job's with --job).")
@click.option("--epochs", type=int, help="Epochs E (default 1, or the job's with --job).")
@click.option("--drop-last/--no-drop-last", default=None,
              help="Drop each epoch's last, incomplete batch (default: no, or the job's with --job).")
@click.option("--batch-growth", type=float, help="Schedule: b_t = b_0 · G^t (default 1, or the job's with --job).")
@click.option("--max-batch-size", type=int, help="Cap for the schedule (default none, or the job's with --job).")
@click.option("--world-size", type=int, help="Ranks (processes) the training set is split over: torchrun's "
                                             "--nnodes × --nproc-per-node (default 1).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object.")
def plan(samples: Optional[int], job_name: Optional[str], batch_size: Optional[int], accum: Optional[int],
         epochs: Optional[int], drop_last: Optional[bool], batch_growth: Optional[float],
         max_batch_size: Optional[int], world_size: Optional[int], as_json: bool) -> None:
    """What-if calculator: iterations, windows, optimizer steps and samples per epoch, and totals.

    With --job, the plan is the run's own: the job's settings (drop_last, batch growth and cap
    included) under the options given, through the same `RunConfig` a run builds. Identical epochs
    share one row (and one JSON entry, `epoch` to `last_epoch`), so 10^8 epochs cost what 5 do.
    With --world-size W > 1, DistributedSampler's split: per-rank samples (padded, or with
    drop_last the tail dropped), per-rank iterations and windows, and real samples seen over all ranks.
    """
    from trainmon.engine.arithmetic import check_positive, plan_run
    from trainmon.engine.distributed_plan import plan_distributed_run

    from .plan_view import render_distributed_plan, render_plan

    if samples is None and job_name is None:
        fail("give --samples N or --job NAME")
    if samples is not None and job_name is not None:
        fail("give either --samples or --job, not both")
    if samples is not None and batch_size is None:
        fail("give --batch-size B with --samples (with --job it defaults to the job's)")
    try:
        world = 1 if world_size is None else world_size
        check_positive("world size", world)
        config = None
        if job_name is not None:
            from trainmon.engine.job import RunConfig, dataset_length
            from trainmon.engine.jobs import JobSpec
            from trainmon.engine.jobs.loader import absolute_target

            job = JobSpec(absolute_target(job_name)).build()
            config = RunConfig.for_job(job, batch_size=batch_size, accum=accum, epochs=epochs, drop_last=drop_last,
                                       batch_growth=batch_growth, max_batch_size=max_batch_size)
            m = dataset_length(job.train_dataset)
            settings = (config.batch_size, config.accum, config.epochs, config.drop_last, config.batch_growth,
                        config.max_batch_size)
        else:
            m = samples
            settings = (batch_size, 1 if accum is None else accum, 1 if epochs is None else epochs, bool(drop_last),
                        1.0 if batch_growth is None else batch_growth, max_batch_size)
        if world > 1:
            result = plan_distributed_run(m, world, *settings)
        else:
            result = plan_run(m, *settings) if config is None else config.plan(m)  # a job's: what the run plans
    except PlanError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    elif world > 1:
        render_distributed_plan(result)
    else:
        render_plan(result)


from .devices import devices  # noqa: E402 - registered after the group is defined
from .resume import resume  # noqa: E402
from .runs import attach, logs, ls, stop  # noqa: E402
from .export import export  # noqa: E402
from .serve import serve  # noqa: E402
from .exec_cmd import exec_command  # noqa: E402

for command in (devices, attach, ls, logs, stop, resume, export, serve, exec_command):
    cli.add_command(command)


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: click's own usage errors also become one line and exit 2.

    A closed stdout pipe (`trainmon ... | head -1`) ends the process quietly through SIGPIPE, like
    other Unix tools (exit status 141 in the shell), instead of a BrokenPipeError.
    """
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        cli.main(args=argv, prog_name="trainmon", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        fail(exc.format_message().replace("\n", " "))
    except click.exceptions.Abort:
        click.echo("trainmon: aborted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
