"""The control socket: any number of viewers watch and steer a run; none of them can slow it down.

A sink on the loop's side (`publish`, `emit` only append to an in-memory inbox and wake the server
thread) and a Unix-socket server on one light I/O thread beside the loop. Per viewer, events are
queued in order and snapshots are latest-wins: a snapshot is encoded only when the viewer has read
everything before it, so a slow viewer misses frames and a stuck one is dropped when its backlog
passes `max_backlog` bytes. Owner-only: the socket is 0600 and every peer's uid (SO_PEERCRED) must
be the run owner's. Bad input (garbage, huge frames, unknown or ill-typed commands, silence) gets an
`Error` or a closed connection; the run goes on. No torch, no textual.
"""

from __future__ import annotations

import collections
import os
import secrets
import selectors
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import msgspec

from trainmon.engine.control import wire
from trainmon.engine.core import messages as msg
from trainmon.engine.core.history import History, HistoryDelta
from trainmon.engine.core.timeline import Timeline, TimelineDelta

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(conn: socket.socket) -> Optional[int]:
    """The uid of the process at the other end of a Unix socket (Linux SO_PEERCRED), or None elsewhere."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    _pid, uid, _gid = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return uid


class _Viewer:
    def __init__(self, conn: socket.socket, now: float) -> None:
        self.conn = conn
        self.reader = wire.FrameReader(wire.MAX_VIEWER_FRAME)
        self.out = bytearray()
        self.subscribed = False
        self.steering = True
        self.wants_snapshot = False
        self.history_version = 0
        self.timeline_version = 0
        self.connected_at = now
        self.closing = False  # close once `out` is written


class ControlServer:
    """Serves one run on the Unix socket `path`; commands go to `send_command` (the loop's queue).

    `owner_uid` (default: ours) is the only uid allowed. `idle_timeout` seconds: a connection that
    has not sent one valid message by then is closed. `keep_events`: the newest events replayed to
    a viewer that subscribes late (the run directory's events.jsonl has them all).
    """

    def __init__(self, path: Path, run_id: str, send_command: Callable[[Any], None], run_dir: str = "",
                 owner_uid: Optional[int] = None, idle_timeout: float = 10.0, max_backlog: int = 8 << 20,
                 keep_events: int = 5000, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.run_id, self.run_dir = run_id, run_dir
        self.send_command = send_command
        self.owner_uid = os.getuid() if owner_uid is None else owner_uid
        self.idle_timeout, self.max_backlog, self.clock = idle_timeout, max_backlog, clock
        self.history = History()
        self.timeline = Timeline()
        self.latest: Optional[msg.Snapshot] = None
        self.events: collections.deque = collections.deque(maxlen=keep_events)
        self.seq = 0
        self.watching = 0  # subscribed viewers, steering or not, as the server's thread last counted (Channel.watched)
        self._inbox: collections.deque = collections.deque()
        self._viewers: dict[socket.socket, _Viewer] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closed = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._listener: Optional[socket.socket] = None
        self.refused = 0  # connections refused for a foreign uid (for tests and logs)

    def replay_from(self, records: Any) -> None:
        """A resumed run: viewers that subscribe get the run's earlier events too, `(seq, event)`
        from its log, numbered as there; the ends they superseded (`Finished`, `Failed`) are left out."""
        for seq, event in records:
            self.seq = max(self.seq, seq)
            if not isinstance(event, msg.FINAL_EVENTS):
                self.events.append(wire.EventRecord(seq, event))

    def show_before_start(self, snapshot: Optional[msg.Snapshot], history: History,
                          timeline: Optional[Timeline] = None) -> None:
        """What a viewer sees until the loop publishes (a resumed run loads its checkpoint first): the
        recorded snapshot, as starting, and the recorded loss history and timeline."""
        if timeline is not None:
            self.timeline = timeline
        if snapshot is not None:
            import msgspec

            self.latest = msgspec.structs.replace(snapshot, status=msg.STARTING, pending=())
        self.history = history

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "ControlServer":
        """Bind, chmod 0600, listen, then move the socket file into place (replacing a stale one), and start
        the I/O thread. The file appears only once it listens: a viewer that sees it can connect (bound
        at its own path, a viewer waiting for the file could connect between bind and listen, refused)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        staging = self.path.with_name(f".{secrets.token_hex(3)}.sk")  # never longer than the final name
        old_umask = os.umask(0o177)  # the socket file is created 0600: no window where others can connect
        try:
            listener.bind(str(staging))
            os.chmod(staging, 0o600)
            listener.listen(16)
            os.replace(staging, self.path)
        except BaseException:
            listener.close()
            staging.unlink(missing_ok=True)
            raise
        finally:
            os.umask(old_umask)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._serve, name="trainmon-control", daemon=True)
        self._thread.start()
        return self

    def close(self, linger: float = 0.0) -> None:
        """Stop serving: give viewers up to `linger` seconds to receive what is queued, then close."""
        deadline = time.monotonic() + linger
        self._wake(force=True)
        while linger and time.monotonic() < deadline and self._viewers and (
                self._inbox or any(v.out for v in self._viewers.values())):
            time.sleep(0.02)
        self._closed.set()
        self._wake(force=True)
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    @property
    def viewer_count(self) -> int:
        """Subscribed viewers that can steer the run (log followers are not counted)."""
        return sum(1 for v in self._viewers.values() if v.subscribed and v.steering)

    def _count_watching(self) -> None:
        self.watching = sum(1 for v in self._viewers.values() if v.subscribed)

    # ---- sink side (the loop's thread): append and wake, never wait ---------------------------
    def publish(self, snapshot: msg.Snapshot, delta: HistoryDelta) -> None:
        self._inbox.append((snapshot, delta))
        self._wake()

    def publish_timeline(self, rows: TimelineDelta) -> None:
        self._inbox.append(rows)  # taken in order, before the snapshot published with them

    def emit(self, event: Any) -> None:
        self._inbox.append(event)
        self._wake()

    def _wake(self, force: bool = False) -> None:
        if not self._viewers and not force:
            return  # nobody to tell: the I/O thread takes the inbox within its select timeout (≤ 1 s)
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: the thread is already due to wake

    # ---- the I/O thread ----------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            while not self._closed.is_set():
                for key, mask in self._selector.select(timeout=1.0):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._service(key.fileobj, mask)
                self._take_inbox()
                self._expire_idle()
                self._flush_all()
        except Exception as exc:  # noqa: BLE001 - the run goes on without its socket
            print(f"trainmon: control socket stopped: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            for conn in list(self._viewers):
                self._drop(conn)
            if self._listener is not None:
                self._listener.close()
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, OSError):
            return
        uid = peer_uid(conn)
        if uid is not None and uid != self.owner_uid:
            self.refused += 1
            try:
                conn.setblocking(False)
                conn.send(wire.frame(wire.Error(f"refused: uid {uid} is not the run's owner", fatal=True)))
            except OSError:
                pass
            conn.close()
            return
        conn.setblocking(False)
        viewer = _Viewer(conn, self.clock())
        self._viewers[conn] = viewer
        viewer.out += wire.frame(wire.Hello(wire.PROTOCOL, self.run_id, os.getpid()))
        self._selector.register(conn, selectors.EVENT_READ, "viewer")

    def _service(self, conn: socket.socket, mask: int) -> None:
        viewer = self._viewers.get(conn)
        if viewer is None:
            return
        if mask & selectors.EVENT_READ:
            try:
                data = conn.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self._drop(conn)
                return
            if data:
                self._received(viewer, data)
        if mask & selectors.EVENT_WRITE:
            self._flush(viewer)

    def _received(self, viewer: _Viewer, data: bytes) -> None:
        try:
            bodies = viewer.reader.feed(data)
        except wire.FrameTooLarge as exc:
            self._refuse(viewer, f"{exc}; closing", fatal=True)
            return
        for body in bodies:
            try:
                request = wire.to_engine_decoder.decode(body)
            except msgspec.DecodeError as exc:  # garbage, an unknown type, a wrong field type
                self._refuse(viewer, f"bad message: {exc}")
                continue
            viewer.connected_at = -1.0  # it spoke: no idle timeout any more
            if isinstance(request, wire.Subscribe):
                self._subscribe(viewer, request.steering)
            else:
                self.send_command(request)

    def _refuse(self, viewer: _Viewer, reason: str, fatal: bool = False) -> None:
        viewer.out += wire.frame(wire.Error(reason, fatal))
        if fatal:
            viewer.closing = True
            viewer.reader.buffer.clear()

    def _subscribe(self, viewer: _Viewer, steering: bool = True) -> None:
        if viewer.subscribed:
            self._refuse(viewer, "already subscribed")
            return
        self._take_inbox()  # what the loop published while nobody watched (not woken for it)
        viewer.subscribed, viewer.steering = True, steering
        delta = self.history.since(-1)  # the whole series at its current resolution
        viewer.history_version = delta.version
        rows = self.timeline.since(-1)
        viewer.timeline_version = rows.version
        self._count_watching()
        viewer.out += wire.frame(wire.Welcome(self.latest, delta, list(self.events), self.viewer_count, self.run_dir,
                                              rows))
        self._broadcast(wire.Viewers(self.viewer_count), skip=viewer)

    def _take_inbox(self) -> None:
        """Apply what the loop published: history into our mirror, events queued to every viewer."""
        new_snapshot = False
        while self._inbox:
            item = self._inbox.popleft()
            if isinstance(item, TimelineDelta):
                self.timeline.apply(item)
                if item.reset:
                    for viewer in self._viewers.values():
                        viewer.timeline_version = -1
            elif isinstance(item, tuple):
                snapshot, delta = item
                self.history.apply(delta)
                self.latest = snapshot
                new_snapshot = True
                if delta.reset:  # the loop sent its whole history (a resumed run): every viewer gets it whole
                    for viewer in self._viewers.values():
                        viewer.history_version = -1
            else:
                self.seq += 1
                record = wire.EventRecord(self.seq, item)
                self.events.append(record)
                self._broadcast(record)
        if new_snapshot:
            for viewer in self._viewers.values():
                viewer.wants_snapshot = viewer.subscribed

    def _broadcast(self, message: Any, skip: Optional[_Viewer] = None) -> None:
        data = None
        for viewer in self._viewers.values():
            if viewer.subscribed and viewer is not skip:
                data = data or wire.frame(message)
                viewer.out += data

    def _flush_all(self) -> None:
        for viewer in list(self._viewers.values()):
            self._flush(viewer)

    def _flush(self, viewer: _Viewer) -> None:
        conn = viewer.conn
        if not viewer.out and viewer.wants_snapshot and self.latest is not None:
            delta = self.history.since(viewer.history_version)  # a reset when the viewer fell far behind
            viewer.history_version = delta.version
            rows = self.timeline.since(viewer.timeline_version)
            viewer.timeline_version = rows.version
            viewer.wants_snapshot = False
            viewer.out += wire.frame(wire.Live(self.latest, delta, rows if rows.rows or rows.reset else None))
        if viewer.out:
            try:
                sent = conn.send(viewer.out)
                del viewer.out[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._drop(conn)
                return
        if len(viewer.out) > self.max_backlog:  # a stuck viewer: drop it rather than hold memory
            self._drop(conn)
            return
        if viewer.closing and not viewer.out:
            self._drop(conn)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if viewer.out else 0)
        try:
            self._selector.modify(conn, want, "viewer")
        except (KeyError, ValueError):
            pass

    def _expire_idle(self) -> None:
        now = self.clock()
        for viewer in list(self._viewers.values()):
            if viewer.connected_at >= 0 and now - viewer.connected_at > self.idle_timeout:
                self._refuse(viewer, f"no request within {self.idle_timeout:g} s; closing", fatal=True)

    def _drop(self, conn: socket.socket) -> None:
        viewer = self._viewers.pop(conn, None)
        try:
            self._selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()
        if viewer is not None and viewer.subscribed:
            self._count_watching()
        if viewer is not None and viewer.subscribed and viewer.steering:
            self._broadcast(wire.Viewers(self.viewer_count))
