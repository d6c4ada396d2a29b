"""The engine in a child process: the loop keeps the main thread of its own interpreter.

Measured on 2-core machines (benchmarks/overhead.py, DESIGN.md): PyTorch's CPU loop runs at about
0.4× speed in a Python thread but at full speed in a spawned process. The queues are created here,
before any UI takes the terminal (creating them afterwards failed inside the resource tracker).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import traceback
from typing import Any, Optional

from . import messages as msg
from .channel import Channel, RunHandle


def _redirect_output(log_path: str) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to `log_path`: prints from the
    job must not draw over the parent's terminal UI."""
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)


def _child_main(spec: Any, config: Any, up: Any, down: Any, publish_interval: float, sampler_interval: Optional[float],
                log_path: Optional[str] = None) -> None:
    if log_path:
        _redirect_output(log_path)
    channel = Channel(up=up, down=down)
    sampler = None
    try:
        from .loop import Trainer

        job = spec.build()
        if sampler_interval:
            from .telemetry import DeviceSampler

            sampler = DeviceSampler(interval=sampler_interval)
            sampler.start()
        Trainer(job, config, channel, publish_interval=publish_interval, sampler=sampler).run()
    except KeyboardInterrupt:
        pass  # the parent saw Ctrl+C too and decides what happens
    except BaseException as exc:  # noqa: BLE001 - building the job failed: report, do not crash silently
        from .jobs.loader import one_line

        channel.emit(msg.Failed(one_line(exc), traceback.format_exc()))
    finally:
        if sampler is not None:
            sampler.stop()


class ProcessRun(RunHandle):
    """Trains `spec.build()` under `config` in a spawned child process.

    Viewer API: `start()`, `send(command)`, `poll() -> Update`, `loss_history`, `latest`,
    `alive`, `join(timeout)`, `terminate()`. `spec` must be picklable and have `build() -> Job`.
    `sampler_interval` (seconds) starts device telemetry in the child; `None` turns it off.
    With `capture_output`, the child's stdout and stderr (the job's prints, warnings) go to the file
    `log_path` instead of the terminal. The child is not a daemon, so a job may use DataLoader
    workers (`num_workers > 0`); `terminate()` (or the run's end) reaps it.
    """

    def __init__(self, spec: Any, config: Any, publish_interval: float = 0.1,
                 sampler_interval: Optional[float] = 1.0, capture_output: bool = False) -> None:
        ctx = mp.get_context("spawn")
        self.channel = Channel(up=ctx.Queue(), down=ctx.Queue())
        self.log_path: Optional[str] = None
        if capture_output:
            fd, self.log_path = tempfile.mkstemp(prefix="trainmon-", suffix=".log")
            os.close(fd)
        self.process = ctx.Process(
            target=_child_main,
            args=(spec, config, self.channel.up, self.channel.down, publish_interval, sampler_interval,
                  self.log_path),
            daemon=False,
            name="trainmon-engine",
        )

    def start(self) -> "ProcessRun":
        self.process.start()
        return self

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    @property
    def exitcode(self) -> Optional[int]:
        return self.process.exitcode

    def join(self, timeout: Optional[float] = None) -> None:
        self.process.join(timeout)

    def terminate(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
