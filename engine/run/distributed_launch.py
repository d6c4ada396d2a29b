"""The process side of a distributed run: torchrun's command line, the plan check, a follower rank.

`trainmon run --nproc-per-node N` hands the launch to torchrun (`python -m torch.distributed.run`)
with the engine or the headless CLI as the module every rank runs; trainmon never starts ranks
itself. Rank 0 then does what a one-process engine does (run directory, socket, recorder); every
other rank is a *follower*: the same job and loop, no viewer, only its own output recorded (output.rank<N>.log).
"""

from __future__ import annotations

import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Optional, Sequence

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.run.distributed import Distributed

LAUNCH_OPTIONS = ("nproc_per_node", "nnodes", "node_rank", "rdzv_endpoint")
RESUME_REFUSED = ("run {id} trained in {world} processes (torchrun): resuming a distributed run is not supported yet; "
                  "its checkpoints (rank 0's, in {path}) hold the model and optimizer for a run of your own")


def resume_refusal(info: dict[str, Any], path: Any) -> Optional[str]:
    """Why the run recorded in `info` (run.json) cannot be resumed: it ran over several ranks (rank 0
    writes `world_size` there). Its mid-epoch checkpoints hold rank 0's loader position and rank 0's
    un-reduced gradients of an open window, which no rank could go on from exactly."""
    world = int(info.get("world_size") or 1)
    if world <= 1 and not (info.get("settings") or {}).get("launch"):
        return None
    return RESUME_REFUSED.format(id=info.get("id", "?"), world=world if world > 1 else "several",
                                 path=f"{path}/checkpoints")


def torchrun_args(launch: dict[str, Any]) -> list[str]:
    """torchrun's options for `launch` (`nproc_per_node`, and `nnodes`, `node_rank`, `rdzv_endpoint` as
    given). One node without a rendezvous endpoint runs `--standalone` (a free local port)."""
    args = [f"--nproc-per-node={launch['nproc_per_node']}"]
    nnodes = launch.get("nnodes")
    if (nnodes is None or str(nnodes) == "1") and not launch.get("rdzv_endpoint"):
        return ["--standalone", *args]
    for key in ("nnodes", "node_rank", "rdzv_endpoint"):
        if launch.get(key) is not None:
            args.append(f"--{key.replace('_', '-')}={launch[key]}")
    return args


def torchrun_command(launch: dict[str, Any], module: str, module_args: Sequence[str],
                     only_rank0_output: bool = False) -> list[str]:
    """`python -m torch.distributed.run [launch options] -m MODULE ARGS`; `only_rank0_output` shows only
    local rank 0's output in the console (torchrun's `--local-ranks-filter 0`)."""
    filt = ["--local-ranks-filter=0"] if only_rank0_output else []
    return [sys.executable, "-m", "torch.distributed.run", *torchrun_args(launch), *filt, "-m", module,
            *module_args]


def check_plan(job: Any, config: Any, world_size: int) -> None:
    """Raise `PlanError` (one line) when the job cannot be split over `world_size` ranks: a training set
    without a length (the sampler needs one), or drop_last leaving the ranks no batch."""
    from trainmon.engine.core.distributed_plan import plan_distributed_run
    from trainmon.engine.jobs.job import dataset_length

    plan_distributed_run(dataset_length(job.train_dataset), world_size, config.batch_size, config.accum,
                         config.epochs, config.drop_last, config.batch_growth, config.max_batch_size)


def install_stop_signals(channel: Channel, received: list[int]) -> None:
    """SIGTERM/SIGINT (torchrun forwards them to every rank): stop at the next agreement; a second aborts.
    SIGHUP is ignored (a detached run outlives its terminal)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def on_signal(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        channel.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def run_follower(job: Any, config: Any, dist: Distributed, received: Optional[list[int]] = None,
                 run_dir: Optional[str] = None) -> int:
    """Train this rank (not rank 0) in this thread: no socket, no telemetry sampler; its own output goes to
    `run_dir`'s `output.rank<N>.log` (rotated as rank 0's output.log). A failure is written to the run's
    failure folder (rank 0 reports it) and exits 1."""
    from trainmon.engine.run.session import exit_code
    from trainmon.engine.run.trainer import Trainer

    capture = None
    if run_dir:
        from trainmon.engine.record.output_capture import start_capture
        from trainmon.engine.record.output_log import output_name

        capture, _note = start_capture(Path(run_dir), output_name(dist.rank))
    try:
        received = [] if received is None else received
        channel = Channel(up=False)  # nothing is kept: rank 0 speaks for the run
        install_stop_signals(channel, received)
        trainer = Trainer(job, config, channel, distributed=dist)
        try:
            result = trainer.run()
        except KeyboardInterrupt:
            return 128 + (received[0] if received else signal.SIGINT)
        if isinstance(result, msg.Failed):  # the Trainer wrote it to the failure folder (rank_failures.root_cause)
            return 2 if result.phase == "setup" else 1
        del trainer  # its DDP wrapper, whose reducer holds the process group, goes at the collection in close()
        dist.close()
        return exit_code(result, received)
    except Exception:
        # trainmon's own error on this rank (the job's are the Trainer's: a Failed, in the failure folder): its
        # traceback into output.rank<N>.log while the capture runs; torchrun shows rank 0's output only
        traceback.print_exc()
        raise
    finally:
        if capture is not None:  # here, not at exit: its threads still copying while the interpreter ends
            capture.stop()  # could abort the rank (SIGABRT seen once in CI after a Ctrl+C)
