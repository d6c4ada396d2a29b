"""A viewer's handle on a run named by id: the live engine's socket, or the run directory of an ended run.
`trainmon attach` builds its handle here, and so does the monitor when its runs screen opens another run."""

from __future__ import annotations

import time
from typing import Any, Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.record.rundir import RunInfo, read_run


class WatchOnly:
    """A live run's viewer that cannot steer it: the app dims every control (`read_only`), and the
    commands that would still reach here (none should) are dropped, never sent to the engine."""

    read_only = True

    def __init__(self, client: Any) -> None:
        self._client = client

    def send(self, command: msg.Command) -> str:
        return ""

    def terminate(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def lost_reason(info: RunInfo) -> Optional[str]:
    """Why the engine of `info` is gone, when it died without a final event (None: it ended properly)."""
    time.sleep(0.2)  # let the engine's last writes land
    now = read_run(info.path)
    if now.status == msg.LOST:
        return f"the engine of run {info.id} died without a final event (killed or crashed): the run is lost"
    return None


def open_handle(info: RunInfo, read_only: bool = False) -> Any:
    """A handle on `info`: subscribed to its engine while it lives (`read_only`: without steering, as
    `trainmon serve` watches), else (or when it ended just now) a `RecordedRun` read from its directory."""
    from trainmon.engine.control.replay import RecordedRun

    if info.live:
        from trainmon.engine.control.client import ConnectError, RunClient

        try:
            client = RunClient(info.socket_path, gone_reason=lambda: lost_reason(info))
            return WatchOnly(client.subscribe(steering=False)) if read_only else client.subscribe()
        except ConnectError:
            info = read_run(info.path)  # it ended just now: show what it left
    return RecordedRun(info)
