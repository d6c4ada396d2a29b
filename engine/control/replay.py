"""A finished, failed or lost run read back from its directory, with the viewer API of a live one.

`attach` opens such a run read-only: the last snapshot, every recorded event, the loss history
from loss.json and the timeline from timeline.json. No torch, no textual.
"""

from __future__ import annotations

from typing import Optional

import msgspec

from trainmon.engine.control.channel import Update
from trainmon.engine.core import messages as msg
from trainmon.engine.core.history import History
from trainmon.engine.record.loss_archive import LossArchive
from trainmon.engine.record.rundir import RunInfo, read_events, read_loss, recorded_timeline


class RecordedRun:
    """Viewer API (`poll`, `loss_history`, `timeline`, `latest`, `alive`...) over a run that no engine serves."""

    read_only = True
    viewers = 0

    def __init__(self, run: RunInfo) -> None:
        self.run = run
        loss = read_loss(run.path)
        self.loss_history: History = LossArchive.from_dict(loss).to_history() if loss else History()
        self.timeline = recorded_timeline(run.path)
        snapshot = run.snapshot or msg.Snapshot(job=str(run.info.get("job", "")))
        if snapshot.status != run.status:  # a lost run's last snapshot still says running
            snapshot = msgspec.structs.replace(snapshot, status=run.status, iterations_per_second=None,
                                               samples_per_second=None, eta_seconds=None)
        self.latest: Optional[msg.Snapshot] = snapshot
        self._events = [event for _seq, event in read_events(run.path)]
        self._delivered = False

    def poll(self) -> Update:
        if self._delivered:
            return Update()
        self._delivered = True
        return Update(snapshot=self.latest, events=list(self._events))

    def send(self, command: msg.Command) -> str:
        return ""  # read-only: the TUI dims every control

    alive = False
    exitcode = 0

    def gone_reason(self) -> Optional[str]:
        return None

    def join(self, timeout: Optional[float] = None) -> None:
        pass

    def terminate(self) -> None:
        pass

    def close(self) -> None:
        pass
