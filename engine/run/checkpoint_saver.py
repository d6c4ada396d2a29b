"""When the loop's checkpoints are written, and writing them beside training instead of inside it.

The loop waits only while a checkpoint is serialised into memory (a copy: training may go on
changing the tensors); a writer thread puts the bytes on disk, fsyncs and renames them
(`CheckpointStore.write`), and the loop announces the save once it is durable. On digits the file
part is ~90% of a save's time (fsync), which is why it leaves the loop.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.record.checkpoint_files import CheckpointStore, SavedCheckpoint


class CheckpointSaver:
    """The run's saves: at most one being written at a time, in order.

    `store` `None` means no checkpoints. `minutes`: the `--checkpoint-minutes` timer, re-armed at each
    save. `clock` gives seconds (monotonic). `last` is the newest durable save, for snapshots.
    """

    def __init__(self, store: Optional[CheckpointStore], minutes: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.minutes, self.clock = store, minutes, clock
        self.last: Optional[msg.CheckpointSaved] = None
        self.saved_key: tuple = (0, 0)  # what the newest save (durable or in flight) holds: nothing new, no save
        self._timer_due: Optional[float] = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self._flight: Optional[tuple[Future, msg.CheckpointSaved, tuple]] = None
        self._newest: Optional[msg.CheckpointSaved] = None  # what the newest save (durable or in flight) holds

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def arm(self) -> None:
        """Start (or restart) the `minutes` timer from now."""
        self._timer_due = None if self.store is None or self.minutes is None else self.clock() + 60.0 * self.minutes

    def timer_due(self) -> bool:
        return self._timer_due is not None and self.clock() >= self._timer_due

    def start(self, state: dict, meta: dict, key: tuple, announce: msg.CheckpointSaved,
              wait: bool = False) -> list[msg.Message]:
        """Serialise `state` now and write it in the background (`wait`: and wait for the file);
        `announce` is the event to emit once durable (its path, size and seconds filled in then).
        Returns the events of saves finished by now. Raises what serialisation raises."""
        assert self.store is not None
        events = self.collect(wait=True)  # the previous file first: files stay in order
        started = self.store.clock()  # the store's clock times the save (the run's may be a test's fake)
        data = self.store.serialize(state)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainmon-checkpoint")
        previous, self.saved_key, self._newest = self.saved_key, key, announce
        self._flight = (self._executor.submit(self.store.write, data, meta, started), announce, previous)
        self.arm()
        return events + (self.collect(wait=True) if wait else [])

    def nothing_new(self, key: tuple) -> Optional[str]:
        """Why a save asked for at the position `key` would write nothing (the newest save already holds
        it: `already saved at the end of epoch 3`), or None when there is something to save."""
        if self.store is None or key != self.saved_key:
            return None
        saved = self._newest
        if saved is None:
            return "no iteration has run yet" if key == (0, 0) else "this is the checkpoint the run resumed from"
        if saved.epoch_complete:
            return f"already saved at the end of epoch {saved.epoch}"
        return f"already saved at epoch {saved.epoch}, iteration {saved.iteration_in_epoch}"

    @property
    def in_flight(self) -> bool:
        return self._flight is not None

    def collect(self, wait: bool = False) -> list[msg.Message]:
        """The save in flight as an event once its file is durable (`CheckpointSaved`) or failed
        (`CheckpointFailed`: the key is forgotten, so the next chance saves again); `wait` blocks for it."""
        if self._flight is None or not (wait or self._flight[0].done()):
            return []
        future, announce, previous = self._flight
        self._flight = None
        try:
            saved: SavedCheckpoint = future.result()
        except Exception as exc:  # noqa: BLE001 - a full disk never ends a run
            from trainmon.engine.jobs.loader import one_line

            self.saved_key = previous
            return [msg.CheckpointFailed(one_line(exc), announce.reason, announce.global_iteration)]
        import msgspec

        self.last = msgspec.structs.replace(announce, path=str(saved.path), size=saved.size, seconds=saved.seconds)
        return [self.last]

    def close(self) -> list[msg.Message]:
        """Wait for the save in flight and stop the writer thread; the last events."""
        events = self.collect(wait=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        return events
