"""The run-directory recorder: a sink that keeps a run's directory current as the loop publishes.

Called on the loop's thread, so it does little per call: a status change rewrites run.json and the
snapshot at once, each event is one appended line, the snapshot is otherwise written at most every
`flush_every` seconds (and at every epoch end and status change) and the loss history as often as
costs at most 1% of the loop's time, everything durably at the end of the run. A run that dies
(kill -9) loses at most the last few seconds. No torch, no textual.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.history import HistoryDelta
from trainmon.engine.core.timeline import Timeline, TimelineDelta
from trainmon.engine.record.loss_archive import LossArchive
from trainmon.engine.record.rundir import RunDirectory


class Recorder:
    """Sink (`publish`, `emit`, `close`) writing to `rundir`. `clock` gives seconds (monotonic)."""

    def __init__(self, rundir: RunDirectory, flush_every: float = 2.0, max_share: float = 0.01,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rundir = rundir
        self.flush_every, self.max_share, self.clock = flush_every, max_share, clock
        self._loss_interval = flush_every  # grows with the cost of a write (see _write_loss)
        self._epoch_ended = False
        self.archive = LossArchive()
        self.timeline = Timeline()  # the loop's, mirrored by its deltas: timeline.json
        self.seq = 0
        self._status: Optional[str] = None
        self._snapshot: Optional[msg.Snapshot] = None
        self._stalled = False
        self._last_x = 0.0
        self._last_snapshot_write = self._last_loss_write = -float("inf")
        self.alerts = int(rundir.info.get("alerts") or 0)  # run.json's count (`ls --json`), kept over resumes

    def keep_loss_until(self, global_iteration: int, raw: Optional[list] = None) -> None:
        """A run resumes from its checkpoint at `global_iteration`: the loss history goes on from what
        was recorded up to there (later points are run again). What the records lack (the engine was
        killed before loss.json was written) comes from `raw`, the checkpoint's last raw `[x, y]`
        points, then from the checkpoint's history as the loop sends it (averaged where it was long)."""
        from trainmon.engine.record.rundir import read_loss

        data = read_loss(self.rundir.path)
        if data is not None:
            self.archive = LossArchive.from_dict(data)
            self.archive.truncate(global_iteration)
        last = self.archive.last_x()
        for x, y in raw or []:
            if last < x <= global_iteration:
                self.archive.append(float(x), float(y))
        self._last_x = self.archive.last_x()
        from trainmon.engine.record.rundir import read_timeline

        recorded = read_timeline(self.rundir.path)  # until the loop sends its checkpoint's timeline
        if recorded is not None:
            self.timeline.load_state_dict(recorded)
            self.timeline.truncate(global_iteration)

    def publish_timeline(self, rows: TimelineDelta) -> None:
        """The loop's new timeline rows (a reset: its whole timeline, as a resumed run restored it)."""
        self.timeline.apply(rows)

    def publish(self, snapshot: msg.Snapshot, delta: HistoryDelta) -> None:
        points = delta.points if not delta.reset else [(x, y) for x, y in delta.points if x > self._last_x]
        if points:  # a reset delta repeats the older, averaged points: only the new ones are kept
            self.archive.extend(points)
            newest = max(x for x, _ in points) if delta.reset else points[-1][0]  # a delta comes in order
            self._last_x = max(self._last_x, newest)
        self._snapshot = snapshot
        changed = snapshot.status != self._status and not msg.RunStatus(snapshot.status).final
        if changed:  # run.json and snapshot.json agree at once: `ls` shows a pause with its iteration
            self._status = snapshot.status
            self.rundir.update(status=msg.RunStatus(snapshot.status).value)
        fresh_epoch = self._epoch_ended and self.clock() - self._last_snapshot_write >= 0.25  # tiny epochs: ≤ 4/s
        stalled = snapshot.liveness is not None and snapshot.liveness.phase == "stalled"
        stall_changed, self._stalled = stalled != self._stalled, stalled  # `ls` shows a stall (and its end) at once
        self._flush(force_snapshot=changed or fresh_epoch or stall_changed)
        self._epoch_ended = self._epoch_ended and not fresh_epoch

    def emit(self, event: Any) -> None:
        self.seq += 1
        self.rundir.append_event(self.seq, event)
        if isinstance(event, msg.EpochEnded):
            self._epoch_ended = True  # the loop publishes right after: that snapshot has the epoch's end
        elif isinstance(event, msg.Alert):
            self.alerts += 1
            self.rundir.update(alerts=self.alerts)
        elif isinstance(event, msg.CheckpointSaved):
            self._write_loss(self.clock())  # the records hold at least what the checkpoint holds
        elif isinstance(event, msg.Finished):
            self.finish(msg.STOPPED if event.stopped else msg.FINISHED)
        elif isinstance(event, msg.Failed):
            self.finish(msg.FAILED, message=event.message)

    def _flush(self, force_snapshot: bool = False) -> None:
        now = self.clock()
        if self._snapshot is not None and (force_snapshot or now - self._last_snapshot_write >= self.flush_every):
            self._last_snapshot_write = now
            self.rundir.write_snapshot(self._snapshot)
        if now - self._last_loss_write >= self._loss_interval:
            self._write_loss(now)

    def _write_loss(self, now: float) -> None:
        """Write loss.json and timeline.json: copied on the loop's thread, built and encoded on the writer's
        (which holds the GIL meanwhile), every `flush_every` seconds while that is cheap, less often as the
        archive grows, so the two never take more than `max_share` of the loop's time together (a full
        archive takes ~4 ms to build and encode: written every 2 s)."""
        self._last_loss_write = now
        self.rundir.write_loss(self.archive.frozen())
        self.rundir.write_timeline(self.timeline.frozen())
        cost = self.clock() - now + self.rundir.encode_seconds()  # the copies here, the last encodings there
        self._loss_interval = max(self.flush_every, cost / self.max_share)

    def finish(self, status: msg.RunStatus, message: Optional[str] = None, **fields: Any) -> None:
        """Write everything durably and mark the run final (finished, stopped or failed)."""
        self.rundir.flush_events()
        if self._snapshot is not None:
            self.rundir.write_snapshot(self._snapshot, durable=True)
        self.rundir.write_loss(self.archive.to_dict(), durable=True)
        self.rundir.write_timeline(self.timeline.state_dict(), durable=True)
        self._status = status.value
        self.rundir.update(durable=True, status=status.value, ended_unix=time.time(), message=message, **fields)

    def close(self) -> None:
        self.rundir.close()
