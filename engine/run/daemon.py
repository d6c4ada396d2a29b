"""The detached engine: `python -m trainmon.engine.run.daemon RUN_DIR` trains the run described there.

Started by `trainmon` in a session of its own (stdin from /dev/null, output to the run's
output.log), so closing the terminal, an SSH drop (SIGHUP) or killing a viewer never touches it.
The training loop keeps this process's main thread. The socket comes up before torch is imported,
so a viewer sees the run (starting) at once. Exit codes: 0 finished or stopped by a viewer, 1
failed, 2 the job or an option was refused (also on the first batch of an IterableDataset, which is
checked when training draws it; or a resume whose checkpoint does not fit), 130 SIGINT, 143 SIGTERM.
With `resume_request` in run.json (written by `trainmon resume`), the run goes on from its newest
checkpoint in the same directory.

Under torchrun (`trainmon run --nproc-per-node N`), every rank runs this module: rank 0 is the
engine above; the others follow (engine/run/distributed_launch.py) and record only their own output. A distributed run
cannot be resumed yet: the request is refused in one line (exit 2).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from trainmon.engine.control.channel import Channel
from trainmon.engine.record.rundir import OUTPUT_FILE, RunDirectory
from trainmon.engine.run.session import EngineSession, exit_code


def _install_signals(channel: Channel, received: list[int]) -> None:
    """SIGHUP is ignored; the first SIGTERM/SIGINT stops after the current iteration, a second aborts."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def on_signal(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        channel.request_stop()  # lock-free: may run inside the loop's own queue calls

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def run_engine(run_dir: Path) -> int:
    """Train the run whose run.json is in `run_dir`; returns the exit code (see the module docstring)."""
    from trainmon.engine.run.distributed import RankEnv

    os.umask(0o077)
    env = RankEnv.from_env()
    if env is not None and env.rank != 0:
        return _follow(run_dir, env)
    rundir = RunDirectory.open(run_dir)
    alerts = (rundir.info.get("settings") or {}).get("alerts")
    if alerts:  # the run's own alert options (`trainmon resume` starts this process without them)
        from trainmon.engine.core.alerts import ENV

        os.environ[ENV] = alerts
    request = rundir.info.get("resume_request")
    if request is not None and _refuse_resume(rundir):
        return 2
    channel = Channel(up=False)
    session = EngineSession(rundir, channel)
    if request is not None:
        session.resuming()
    session.start()
    if rundir.info["settings"].get("start_paused") and request is None:  # `trainmon lesson`: the teacher steps
        from trainmon.engine.core.messages import Pause

        channel.send(Pause())  # first in the queue: the loop waits before its first iteration
    received: list[int] = []
    _install_signals(channel, received)
    code = 1
    try:
        code = _train(session, channel, rundir.info["settings"], received, request, env)
    except KeyboardInterrupt:
        code = 128 + (received[0] if received else signal.SIGINT)
    finally:
        session.close(code)
    return code


def _refuse_resume(rundir: RunDirectory) -> bool:
    """A distributed run cannot be resumed (yet): say so in output.log, leave run.json as it was."""
    from trainmon.engine.run.distributed_launch import resume_refusal

    reason = resume_refusal(rundir.info, rundir.path)
    if reason is None:
        return False
    print(f"trainmon: error: {reason}", file=sys.stderr, flush=True)
    rundir.info.pop("resume_request", None)
    rundir.write_info()
    return True


def _prepare(settings: dict[str, Any], env: Any) -> tuple:
    """`(job, config, warnings)` from the run's settings; on a rank, checked against the world size."""
    from trainmon.engine.jobs.run_setup import prepare_run
    from trainmon.engine.run.distributed_launch import check_plan

    options = {k: v for k, v in settings.get("options", {}).items() if v is not None}
    options.pop("tensorboard", None)  # `--tensorboard DIR`: the session's sink, not a RunConfig field
    _spec, job, config, warnings = prepare_run(settings["target"], settings.get("image_size"),
                                               settings.get("seed", 0), **options)
    if env is not None:
        check_plan(job, config, env.world_size)
    return job, config, warnings


def _follow(run_dir: Path, env: Any) -> int:
    """A rank other than 0: the same job from run.json, trained with nothing recorded (rank 0 reports a
    refusal or a failure; this rank's own goes to the failure folder)."""
    from trainmon.engine.record.rank_failures import failure_dir
    from trainmon.engine.run.distributed import Distributed
    from trainmon.engine.run.distributed_launch import run_follower

    info = RunDirectory.open(run_dir).info
    if info.get("resume_request") is not None or info.get("resumes"):
        return 2  # rank 0 refuses it with a line
    try:
        job, config, _warnings = _prepare(info["settings"], env)
    except Exception:  # noqa: BLE001 - rank 0 builds the same job and reports why
        return 2
    dist = Distributed.start(env, config.device, failure_dir=str(failure_dir(run_dir)))
    return run_follower(job, config, dist, run_dir=str(run_dir))


def _train(session: EngineSession, channel: Channel, settings: dict[str, Any], received: list[int],
           request: Any = None, env: Any = None) -> int:
    from trainmon.engine.core.arithmetic import PlanError
    from trainmon.engine.record.checkpoint_files import CheckpointError
    from trainmon.engine.run.resume import prepare_resume

    resume = None
    try:
        if request is not None:  # `trainmon resume`: the run goes on from its newest checkpoint
            job, config, warnings, resume = prepare_resume(session.rundir.path, settings, run_id=session.run_id,
                                                           **request)
        else:
            job, config, warnings = _prepare(settings, env)
    except (PlanError, CheckpointError) as exc:
        session.setup_failed(str(exc))
        return 2
    except Exception as exc:  # noqa: BLE001 - any failure to build the job is reported, not crashed on
        from trainmon.engine.jobs.loader import one_line

        session.setup_failed(one_line(exc), traceback.format_exc())
        return 1
    # DataLoader workers write to this process's stderr, the run's output.log: a worker that dies
    # before torch can catch its error is explained from there
    log = str(session.rundir.path / OUTPUT_FILE)
    if env is None:
        result = session.train(job, config, warnings, worker_log=log, resume=resume)
    else:
        from trainmon.engine.run.distributed import Distributed

        dist = Distributed.start(env, config.device)
        result = session.train_rank0(dist, job, config, warnings, worker_log=log)
    return exit_code(result, received)


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: python -m trainmon.engine.run.daemon RUN_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(run_engine(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
