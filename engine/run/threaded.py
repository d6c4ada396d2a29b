"""The engine in a thread of this process, with the same viewer API as `client.RunClient`.

For tests and scripts that build a `Job` object in-process (a thread runs PyTorch's CPU loop at
about 0.4× speed on 2 cores, so real runs use the detached engine process, engine/run/daemon.py).
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from trainmon.engine.control.channel import Channel, RunHandle
from trainmon.engine.jobs.job import Job, RunConfig
from trainmon.engine.run.trainer import Trainer


class ThreadRun(RunHandle):
    """Trains `job` under `config` on a daemon thread. Viewer API as `engine.client.RunClient`."""

    def __init__(self, job: Job, config: RunConfig, publish_interval: float = 0.1, sampler: Any = None) -> None:
        self.channel = Channel()
        self.trainer = Trainer(job, config, self.channel, publish_interval=publish_interval, sampler=sampler)
        self.result: Any = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="trainmon-engine")

    def _main(self) -> None:
        self.result = self.trainer.run()

    def start(self) -> "ThreadRun":
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def exitcode(self) -> Optional[int]:
        return None if self.alive else 0

    def close(self) -> None:
        """Viewer API: nothing to close for a thread."""

    def join(self, timeout: Optional[float] = None) -> None:
        self._thread.join(timeout)

    def terminate(self) -> None:
        """Threads cannot be killed: ask the loop to stop and wait a little."""
        from trainmon.engine.core.messages import Resume, Stop

        self.channel.send(Stop())
        self.channel.send(Resume())
        self._thread.join(5)
