"""The two-queue boundary between the loop and a viewer, the same for threads and processes.

Up: snapshots (with the history points new since the last one) and events, in order. Down:
commands. The loop only ever `put`s without blocking, so it never waits on a viewer; the viewer
drains everything it finds and keeps the newest snapshot (latest wins).
"""

from __future__ import annotations

import queue
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from trainmon.engine.core.history import History, HistoryDelta
from trainmon.engine.core.messages import Snapshot
from trainmon.engine.core.timeline import Timeline, TimelineDelta


@dataclass
class Update:
    """What one `Channel.poll` found: the newest snapshot (or `None` if none came) and every event, in order."""

    snapshot: Optional[Snapshot] = None
    events: list[Any] = field(default_factory=list)


class Channel:
    """Loop side: `publish`, `emit`, `poll_commands`, `wait_command`. Viewer side: `poll`, `send`.

    `up` and `down` are any queues with `put` / `get(timeout=)` / `get_nowait`: `queue.Queue` for
    a loop in a thread (the default), `multiprocessing` queues for a loop in a child process.
    `listener`, when given, is called in the loop's thread with every item published (used by the
    headless printer, which must see each event without a polling thread of its own).
    The viewer-side copies of the loss history and the timeline are `loss_history` and `timeline`, kept
    current by `poll`. `sinks` get every publication too, in the loop's thread (`publish(snapshot, delta)`,
    `emit(event)`, and `publish_timeline(rows)` before `publish` for a sink that has it): the run-directory
    recorder, the control-socket server. A sink that raises is dropped with one line on stderr; the run goes on.
    """

    def __init__(self, up: Any = None, down: Any = None, listener: Optional[Callable[[Any], None]] = None,
                 history_capacity: int = 2048, sinks: Sequence[Any] = ()) -> None:
        self.up = up if up is not None else queue.Queue()
        self.down = down if down is not None else queue.Queue()
        self.listener = listener
        self.sinks = list(sinks)
        self.loss_history = History(capacity=history_capacity)
        self.timeline = Timeline()
        self.latest: Optional[Snapshot] = None
        self._stop_flag = False  # set by request_stop(); a plain attribute, safe in a signal handler
        self.wake: Optional[Callable[[], None]] = None  # called on every command sent: the loop looks at once
        self.stop_signalled = False  # a signal asked for the stop (the stop's checkpoint says so)
        self.lock = threading.RLock()  # the loop's thread and the heartbeat's both publish and emit
        self.polled = False  # a viewer in this process polls the channel (it watches live)

    # ---- loop side -------------------------------------------------------------------------
    def publish(self, snapshot: Snapshot, delta: HistoryDelta, timeline: Optional[TimelineDelta] = None) -> None:
        """`snapshot`, the loss points of `delta` and the timeline rows of `timeline` (when new ones came)."""
        with self.lock:
            if timeline is not None and (timeline.rows or timeline.reset):
                if self.up is not False:  # the listener (headless lines) has no use for rows
                    self.up.put(("timeline", timeline, None))
                for sink in tuple(self.sinks):
                    if hasattr(sink, "publish_timeline"):
                        self._call(sink, "publish_timeline", timeline)
            self._put(("snapshot", snapshot, delta))
            for sink in tuple(self.sinks):
                self._call(sink, "publish", snapshot, delta)

    def emit(self, event: Any) -> None:
        with self.lock:
            self._put(("event", event, None))
            for sink in tuple(self.sinks):
                self._call(sink, "emit", event)

    def watched(self) -> bool:
        """Whether a viewer watches live: one polls this channel in this process, or a sink has viewers of its
        own (`watching`: the control socket's subscribed viewers). Publications slow down while none does."""
        return self.polled or any(getattr(sink, "watching", 0) for sink in tuple(self.sinks))

    def _call(self, sink: Any, method: str, *args: Any) -> None:
        try:
            getattr(sink, method)(*args)
        except Exception as exc:  # noqa: BLE001 - a viewer or a full disk never stops training
            if sink in self.sinks:
                self.sinks.remove(sink)
            print(f"trainmon: {type(sink).__name__} stopped after an error: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)

    def _put(self, item: tuple) -> None:
        if self.listener is not None:
            self.listener(item[1])
        if self.up is not False:  # a listener-only channel (headless) keeps nothing
            self.up.put(item)

    def request_stop(self) -> None:
        """Ask the loop to stop at its next safe point, without taking any lock.

        For signal handlers: `send()` could deadlock there, since the handler runs on the main
        thread, possibly while that thread holds the queue's lock inside `poll_commands`.
        """
        self._stop_flag = self.stop_signalled = True
        if self.wake is not None:
            self.wake()  # sets one attribute: safe in a signal handler

    @property
    def stop_pending(self) -> bool:
        """A `request_stop()` (a signal) waits for the loop's next look at its commands."""
        return self._stop_flag

    def poll_commands(self) -> list[Any]:
        """Every command waiting, without blocking (a `request_stop()` comes as one `Stop`)."""
        commands = []
        if self._stop_flag:
            from trainmon.engine.core.messages import Stop

            self._stop_flag = False
            commands.append(Stop())
        pending = getattr(self.down, "queue", None)  # queue.Queue's deque: its length is read without the lock
        if pending is not None and not pending:
            return commands  # the common case, every iteration: nothing waiting, no lock taken
        while True:
            try:
                commands.append(self.down.get_nowait())
            except (queue.Empty, EOFError, OSError):
                return commands

    def wait_command(self, timeout: float) -> Optional[Any]:
        """Block up to `timeout` seconds for one command (used only while paused)."""
        try:
            command = self.down.get(timeout=timeout)
        except (queue.Empty, EOFError, OSError):
            command = None
        if command is None and self._stop_flag:
            from trainmon.engine.core.messages import Stop

            self._stop_flag = False
            return Stop()
        return command

    # ---- viewer side -----------------------------------------------------------------------
    def send(self, command: Any) -> None:
        """Queue a command for the loop's next safe point."""
        self.down.put(command)
        if self.wake is not None:
            self.wake()

    def poll(self) -> Update:
        """Drain everything published since the last poll, without blocking; newest snapshot wins."""
        self.polled = True
        update = Update()
        while True:
            try:
                kind, payload, delta = self.up.get_nowait()
            except (queue.Empty, EOFError, OSError):
                break
            if kind == "timeline":
                self.timeline.apply(payload)
            elif kind == "snapshot":
                self.loss_history.apply(delta)
                update.snapshot = payload
                self.latest = payload
            else:
                update.events.append(payload)
        return update

    @classmethod
    def listener_only(cls, listener: Callable[[Any], None]) -> "Channel":
        """A channel whose published items go to `listener` alone (nothing is queued up)."""
        return cls(up=False, listener=listener)


class RunHandle:
    """The viewer API shared by the thread and process runners, over their `channel`."""

    channel: Channel

    def send(self, command: Any) -> None:
        """Queue a command for the loop's next safe point."""
        self.channel.send(command)

    def poll(self) -> Update:
        """Everything published since the last poll (newest snapshot, all events)."""
        return self.channel.poll()

    @property
    def loss_history(self) -> History:
        return self.channel.loss_history

    @property
    def timeline(self) -> Timeline:
        return self.channel.timeline

    @property
    def latest(self) -> Optional[Snapshot]:
        return self.channel.latest
