"""The `trainmon` command: the monitor (TUI or headless), `plan`, and friends.

Every bad input ends in one line on stderr and exit code 2; a failed run exits 1; a run stopped by
Ctrl+C exits 130, by SIGTERM 143.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any, Optional

import click

from trainmon.engine.core.arithmetic import PlanError

from .alert_options import alert_options
from .common import fail, job_option, run_options
from .compare import compare
from .devices import devices
from .exec_cmd import exec_command
from .export import export
from .lesson import lesson
from .resume import resume
from .runs import attach, logs, ls, stop
from .serve import serve
from .start import start_run


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@job_option
@run_options
@alert_options
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
@alert_options
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

    \b
    Examples:
      trainmon plan --samples 1000 --batch-size 64 --accum 4 --epochs 2
      trainmon plan --samples 60000 --batch-size 32 --epochs 10 --batch-growth 2 --max-batch-size 256
      trainmon plan --job digits --accum 2          # the built-in job's own plan
      trainmon plan --job job.py --world-size 4     # under torchrun, 4 ranks
      trainmon plan --samples 1437 --batch-size 32 --json
    """
    from trainmon.engine.core.arithmetic import check_positive
    from trainmon.engine.core.distributed_plan import plan_distributed_run
    from trainmon.engine.core.plan import plan_run

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
            from trainmon.engine.jobs import JobSpec
            from trainmon.engine.jobs.job import RunConfig, dataset_length
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


for command in (devices, attach, ls, logs, stop, compare, resume, export, serve, exec_command, lesson):
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
