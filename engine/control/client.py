"""A viewer's end of the control socket, with the same API as the in-process run handles.

`RunClient` connects, checks the protocol, and (after `subscribe()`) keeps a reader thread that
turns frames into an `Update` queue; `poll()` drains it like `Channel.poll`, so the TUI and the
headless printer work unchanged over a socket. No torch, no textual.
"""

from __future__ import annotations

import itertools
import os
import queue
import secrets
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import msgspec

from trainmon.engine.control import wire
from trainmon.engine.control.channel import Update
from trainmon.engine.core import messages as msg
from trainmon.engine.core.history import History
from trainmon.engine.core.timeline import Timeline


class ConnectError(ConnectionError):
    """The run's engine cannot be reached or refused us; the message is one line."""


class RunClient:
    """Viewer of a live run over `socket_path`. Viewer API: `subscribe()`, `send(command) -> id`,
    `poll() -> Update`, `loss_history`, `timeline`, `latest`, `alive`, `viewers`, `gone_reason()`, `close()`.

    `gone_reason` (a callable, optional) explains an engine that vanished without a final event
    (for example a signal name from the launcher's process handle, or "lost" from the run directory).
    Raises `ConnectError` when the socket is missing, refuses, or speaks another protocol.
    """

    def __init__(self, socket_path: str | Path, timeout: float = 5.0,
                 gone_reason: Optional[Callable[[], Optional[str]]] = None) -> None:
        self.socket_path = str(socket_path)
        self._gone_reason = gone_reason
        self.loss_history = History()
        self.timeline = Timeline()
        self.latest: Optional[msg.Snapshot] = None
        self.viewers = 0
        self.run_dir = ""
        self.errors: list[str] = []
        self.last_seq = 0
        self.skip_seq = 0  # events up to this sequence number are not delivered (already read from the log)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        # unique to this viewer: a Welcome replays the answers to every viewer's commands so far
        self._id_prefix = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._closed = False
        self._shut = False  # close() was called: never connect again
        self._ended = False  # a final event came: the engine closes the connection on purpose
        self._steering: Optional[bool] = None  # how subscribe() was called (None: not yet)
        self.welcomes = 0  # Welcome frames taken: the update that holds one is a replay of the run so far
        self.reconnects = 0
        self._tries = 0  # reconnections in a row that brought no live frame yet
        self._reader_thread: Optional[threading.Thread] = None
        self._open(timeout)

    def _open(self, timeout: float) -> None:
        """Connect and read the engine's Hello. Raises `ConnectError` (one line)."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.socket_path)
        except FileNotFoundError:
            self.sock.close()
            raise ConnectError(f"no control socket at {self.socket_path} (the engine is not running)") from None
        except OSError as exc:
            self.sock.close()
            raise ConnectError(f"cannot connect to {self.socket_path}: {exc.strerror or exc}") from None
        self._reader = wire.FrameReader(wire.MAX_SERVER_FRAME)
        self._pending: list[bytes] = []  # frames that arrived with the Hello, decoded at subscribe()
        try:
            first = self._read_one()
        except ConnectError:
            self.sock.close()
            raise
        if isinstance(first, wire.Error):
            self.sock.close()
            raise ConnectError(first.reason)
        if not isinstance(first, wire.Hello) or first.protocol != wire.PROTOCOL:
            self.sock.close()
            raise ConnectError(f"the engine speaks protocol {getattr(first, 'protocol', '?')}, this viewer {wire.PROTOCOL}")
        self.hello = first
        self.sock.settimeout(None)

    def _read_one(self) -> Any:
        while True:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise ConnectError(f"the engine at {self.socket_path} did not answer") from None
            if not data:
                raise ConnectError(f"the engine at {self.socket_path} closed the connection")
            bodies = self._reader.feed(data)
            if bodies:
                self._pending = bodies[1:]
                return wire.to_viewer_decoder.decode(bodies[0])

    # ---- following -------------------------------------------------------------------------
    def subscribe(self, steering: bool = True) -> "RunClient":
        """Ask for the run so far and live updates; a reader thread collects them for `poll()`.
        `steering=False` (a log follower) is left out of the viewer count others see."""
        self._steering = steering
        self._write(wire.Subscribe(steering=steering))
        for body in self._pending:
            self._queue.put(wire.to_viewer_decoder.decode(body))
        self._reader_thread = threading.Thread(target=self._read_loop, name="trainmon-viewer", daemon=True)
        self._reader_thread.start()
        return self

    def _read_loop(self) -> None:
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    break
                for body in self._reader.feed(data):
                    self._queue.put(wire.to_viewer_decoder.decode(body))
        except (OSError, ValueError, msgspec.DecodeError):
            pass
        finally:
            self._queue.put(None)  # the end of the connection

    def poll(self) -> Update:
        """Everything received since the last poll: newest snapshot wins, every event in order."""
        update = Update()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return update
            if item is None:
                if not self._reconnect():
                    self._closed = True
                    return update
            elif isinstance(item, wire.Live):
                self._tries = 0
                self.loss_history.apply(item.history)
                if item.timeline is not None:
                    self.timeline.apply(item.timeline)
                update.snapshot = self.latest = item.snapshot
            elif isinstance(item, wire.EventRecord):
                self._deliver(item, update)
            elif isinstance(item, wire.Welcome):
                self.welcomes += 1
                self.loss_history.apply(item.history)
                if item.timeline is not None:
                    self.timeline.apply(item.timeline)
                self.viewers, self.run_dir = item.viewers, item.run_dir
                self._older_events(item, update)
                for record in item.events:
                    self._deliver(record, update)
                if item.snapshot is not None:
                    update.snapshot = self.latest = item.snapshot
            elif isinstance(item, wire.Viewers):
                self.viewers = item.count
            elif isinstance(item, wire.Error):
                self.errors.append(item.reason)

    def _reconnect(self) -> bool:
        """The connection ended without a final event while the engine may still run: the engine drops a
        viewer that stopped reading (its backlog passed the server's limit), as a suspended terminal's
        (Ctrl+Z) does. Connect again and subscribe as before: the Welcome brings the run as it is now,
        the events missed in between come from the log, those seen before are not delivered twice.
        False when the engine is gone (or keeps closing on us), after close(), or before subscribe()."""
        if self._shut or self._ended or self._steering is None or self._tries >= 3:
            return False
        self.sock.close()
        try:
            self._open(timeout=2.0)
        except ConnectError:
            return False
        self._tries += 1
        self.reconnects += 1
        self.skip_seq = max(self.skip_seq, self.last_seq)
        self.subscribe(self._steering)
        return True

    def _older_events(self, welcome: wire.Welcome, update: Update) -> None:
        """The engine replays only its newest events; older ones come from the run's events.jsonl."""
        first = welcome.events[0].seq if welcome.events else 1
        if first <= self.skip_seq + 1 or not welcome.run_dir:
            return
        from trainmon.engine.record.rundir import read_events

        for seq, event in read_events(Path(welcome.run_dir), after_seq=self.skip_seq):
            if seq >= first:
                break
            self._deliver(wire.EventRecord(seq, event), update)

    def _deliver(self, record: wire.EventRecord, update: Update) -> None:
        self.last_seq = record.seq
        self._ended = self._ended or isinstance(record.event, msg.FINAL_EVENTS)
        if record.seq > self.skip_seq:
            update.events.append(record.event)

    # ---- steering --------------------------------------------------------------------------
    def send(self, command: msg.Command) -> str:
        """Send a command for the loop's next safe point; returns the id its answer will carry
        (`<pid>-<random>-<n>`: no other viewer's answer, replayed in a Welcome, can carry it)."""
        command_id = command.id or f"{self._id_prefix}-{next(self._ids)}"
        if not command.id:
            command = msgspec.structs.replace(command, id=command_id)
        self._write(command)
        return command_id

    def _write(self, message: msgspec.Struct) -> None:
        data = wire.frame(message)
        with self._lock:
            try:
                self.sock.sendall(data)
            except OSError:
                self._closed = True

    # ---- the run handle API the TUI uses -----------------------------------------------------
    @property
    def alive(self) -> bool:
        """False once the engine closed the connection (the run ended, or the engine died)."""
        if self._reader_thread is None:
            return not self._closed
        return self._reader_thread.is_alive() or not self._closed and not self._queue.empty()

    @property
    def exitcode(self) -> Optional[int]:
        return None if self.alive else 0

    def gone_reason(self) -> Optional[str]:
        """Why the engine is gone when it ended without a final event, else None."""
        if self.alive:
            return None
        reason = self._gone_reason() if self._gone_reason else None
        return reason or "the engine closed the connection without a final event (crashed or killed)"

    def join(self, timeout: Optional[float] = None) -> None:
        if self._reader_thread is not None:
            self._reader_thread.join(timeout)

    def terminate(self) -> None:
        """Force: two SIGTERMs to the engine (same user). The first asks for a stop after the current
        iteration, the second aborts that iteration at once; the run is recorded as stopped (143)."""
        for _ in range(2):
            try:
                os.kill(self.hello.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)

    def close(self) -> None:
        """Detach: the run goes on."""
        self._shut = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
