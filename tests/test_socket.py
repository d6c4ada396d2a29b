"""The control socket as an input like any other: garbage, huge frames, wrong types, silence, a
viewer that never reads, a foreign user. Each gets an error or a closed connection; the run goes on.

Protocol input goes to a real detached engine (one per module); what needs a short idle timeout,
a small backlog or a foreign uid goes to an in-process `ControlServer` fed by a real Trainer.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import msgspec
import pytest
from conftest import linear_job
from engines import kill_engine, run_info, start_detached, wait_until

from trainmon.engine.control import wire
from trainmon.engine.control.channel import Channel
from trainmon.engine.control.client import ConnectError, RunClient
from trainmon.engine.control.server import ControlServer
from trainmon.engine.core import messages as msg
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.run.trainer import Trainer

FOREIGN_UID = 65534  # nobody


class Raw:
    """A bare connection to a control socket: bytes out, decoded frames in (no client logic)."""

    def __init__(self, path: str | Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.reader = wire.FrameReader(wire.MAX_SERVER_FRAME)
        self.frames: list[Any] = []
        self.eof = False
        self.hello = self.read()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_message(self, message: Any) -> None:
        self.send(wire.frame(message))

    def read(self, timeout: float = 10.0) -> Optional[Any]:
        """The next frame's message, or None once the engine closed the connection."""
        deadline = time.monotonic() + timeout
        while not self.frames:
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no frame within {timeout:g} s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                continue
            self.frames += [wire.to_viewer_decoder.decode(body) for body in self.reader.feed(data)]
        return self.frames.pop(0)

    def read_until(self, predicate, timeout: float = 20.0) -> Any:
        """Read frames until one matches `predicate`; that one (AssertionError at EOF or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.read(max(0.01, deadline - time.monotonic()))
            if message is None:
                raise AssertionError("the engine closed the connection")
            if predicate(message):
                return message

    def close(self) -> None:
        self.sock.close()


def body_frame(body: bytes) -> bytes:
    """`body` behind a valid length prefix."""
    return wire.HEADER.pack(len(body)) + body


def assert_training(socket_path: str | Path, iterations: int = 10) -> msg.Snapshot:
    """A fresh viewer sees the run training: global_iteration rises by `iterations`."""
    client = RunClient(socket_path).subscribe()
    try:
        wait_until(lambda: client.poll() is not None and client.latest is not None, timeout=20, interval=0.05)
        start = client.latest.global_iteration
        wait_until(lambda: client.poll() is not None and client.latest.global_iteration >= start + iterations,
                   timeout=30, interval=0.05, what=f"global_iteration to pass {start + iterations}")
        assert client.latest.status == msg.RUNNING
        return client.latest
    finally:
        client.close()


# ---- bad input to a real engine ------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One detached digits engine for this module's protocol tests: its socket path."""
    env = {**os.environ, "TRAINMON_HOME": str(tmp_path_factory.mktemp("socket-home"))}
    run_id, run_dir = start_detached("--epochs", "5000", env=env)
    try:
        yield run_info(run_dir)["socket"]
    finally:
        kill_engine(run_dir)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"\xc1\xc1\xc1\xc1", "bad message"),  # 0xc1 is never valid msgpack
        (msgspec.msgpack.encode(5), "bad message"),  # msgpack, but not a message
        (msgspec.msgpack.encode({"type": "Reboot"}), "Reboot"),  # an unknown command
        (msgspec.msgpack.encode({"type": "SetBatchSize", "batch_size": "x"}), "Expected `int`, got `str`"),
        (msgspec.msgpack.encode({"type": "SetBatchSize", "batch_size": True}), "Expected `int`, got `bool`"),
        (msgspec.msgpack.encode({"type": "SetBatchSize"}), "missing required field `batch_size`"),
        (msgspec.msgpack.encode({"type": "SetAccum", "accum": 2.5}), "Expected `int`, got `float`"),
    ],
    ids=["garbage", "not-a-message", "unknown-type", "str-field", "bool-field", "missing-field", "float-field"],
)
def test_bad_message_gets_an_error_and_the_connection_and_run_go_on(engine, body, fragment):
    raw = Raw(engine)
    try:
        raw.send(body_frame(body))
        error = raw.read()
        assert isinstance(error, wire.Error), error
        assert error.reason.startswith("bad message: ") and fragment in error.reason, error.reason
        assert error.fatal is False
        raw.send_message(wire.Subscribe())  # still a working connection
        welcome = raw.read_until(lambda m: isinstance(m, wire.Welcome))
        assert welcome.snapshot.status == msg.RUNNING
    finally:
        raw.close()
    assert_training(engine)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", [wire.MAX_VIEWER_FRAME + 1, 10_000_000], ids=["limit+1", "10MB"])
def test_a_frame_over_the_limit_is_fatal_and_closes_the_connection(engine, size):
    raw = Raw(engine)
    sent: list = []

    def send_it():  # the engine stops reading midway: our sendall then fails, which is the point
        try:
            raw.send(wire.HEADER.pack(size) + b"\0" * size)
            sent.append("all")
        except OSError as exc:
            sent.append(type(exc).__name__)

    sender = threading.Thread(target=send_it, daemon=True)
    try:
        sender.start()
        error = raw.read()
        assert error == wire.Error(f"frame of {size} bytes exceeds the limit of {wire.MAX_VIEWER_FRAME}; closing",
                                   fatal=True)
        assert raw.read() is None  # closed
        sender.join(10)
        if size == 10_000_000:
            assert sent and sent[0] in ("BrokenPipeError", "ConnectionResetError"), sent
    finally:
        raw.close()
    assert_training(engine)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_http_request_is_a_too_large_frame(engine):
    raw = Raw(engine)
    try:
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        error = raw.read()
        assert error == wire.Error(f"frame of {int.from_bytes(b'GET ', 'big')} bytes exceeds the limit of "
                                   f"{wire.MAX_VIEWER_FRAME}; closing", fatal=True)
        assert raw.read() is None
    finally:
        raw.close()
    assert_training(engine)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("batch_size", [0, -3, 2**40])
def test_a_well_formed_command_with_a_bad_value_is_rejected_with_a_reason(engine, batch_size):
    client = RunClient(engine).subscribe()
    try:
        command_id = client.send(msg.SetBatchSize(batch_size))
        events: list = []

        def answered():
            events.extend(client.poll().events)
            return [e for e in events if isinstance(e, (msg.CommandAccepted, msg.CommandRejected))
                    and e.command.id == command_id]

        [answer] = wait_until(answered, timeout=20, interval=0.05, what="the answer")
        assert isinstance(answer, msg.CommandRejected)
        assert answer.command == msg.SetBatchSize(batch_size, id=command_id)
        assert answer.reason.startswith("batch size must be ") and str(batch_size) in answer.reason, answer.reason
        assert client.latest.pending == ()
        assert client.latest.batch_size == 32
    finally:
        client.close()
    assert_training(engine)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_second_subscribe_is_refused_but_not_fatal(engine):
    raw = Raw(engine)
    try:
        raw.send_message(wire.Subscribe())
        raw.read_until(lambda m: isinstance(m, wire.Welcome))
        raw.send_message(wire.Subscribe())
        error = raw.read_until(lambda m: isinstance(m, wire.Error))
        assert error == wire.Error("already subscribed", fatal=False)
        raw.read_until(lambda m: isinstance(m, wire.Live))  # still served
    finally:
        raw.close()


# ---- silence and a stuck viewer, in-process -----------------------------------------------------


@pytest.fixture
def served(thread_run):
    """`served(**server_options) -> ControlServer` on a short socket path, fed by a real Trainer
    (a small regression job, effectively endless) running in a thread; all closed at teardown."""
    folders, servers = [], []

    def start(**options: Any) -> ControlServer:
        folder = tempfile.mkdtemp(prefix="tm-", dir="/tmp")
        folders.append(folder)
        channel = Channel(up=False)
        server = ControlServer(Path(folder) / "s.sock", "run-test", channel.send, **options).start()
        servers.append(server)
        channel.sinks.append(server)
        job = linear_job()
        thread_run(Trainer(job, RunConfig.for_job(job, epochs=10**6), channel))
        wait_until(lambda: server.latest is not None and server.latest.global_iteration > 0, timeout=30,
                   what="the trainer to publish")
        return server

    yield start
    for server in servers:
        server.close()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow  # 2-12 s here: the idle timeout, then the viewer kept fed beside an endless trainer
@pytest.mark.timeout(60)
def test_a_silent_connection_is_closed_after_the_idle_timeout(served):
    server = served(idle_timeout=0.5)
    viewer = RunClient(server.path).subscribe()  # one that spoke: never timed out
    try:
        connected = time.monotonic()
        silent = Raw(server.path)
        assert silent.hello == wire.Hello(wire.PROTOCOL, "run-test", os.getpid())
        error = silent.read(timeout=10)
        waited = time.monotonic() - connected
        assert error == wire.Error("no request within 0.5 s; closing", fatal=True)
        assert silent.read() is None
        assert 0.5 <= waited < 3.0, waited
        before = viewer.latest.global_iteration if viewer.poll() and viewer.latest else 0
        time.sleep(1.0)
        wait_until(lambda: viewer.poll() is not None and viewer.latest.global_iteration > before + 5, timeout=30,
                   what="the subscribed viewer to keep receiving")
        assert viewer.alive and server.viewer_count == 1
    finally:
        viewer.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_stuck_viewer_never_slows_the_loop_and_is_dropped_past_its_backlog(served):
    server = served(max_backlog=256 << 10)  # small, yet more than a busy machine lets a live viewer lag
    slowest: list[float] = [0.0]
    for name in ("publish", "emit"):  # time every call the loop makes into the server
        original = getattr(server, name)

        def timed(*args, _original=original):
            started = time.perf_counter()
            _original(*args)
            slowest[0] = max(slowest[0], time.perf_counter() - started)

        setattr(server, name, timed)
    watcher = RunClient(server.path).subscribe()
    stuck = Raw(server.path)
    try:
        stuck.send_message(wire.Subscribe())  # ... and never reads again
        wait_until(lambda: watcher.poll() is not None and watcher.viewers == 2, timeout=30,
                   what="both viewers to subscribe")
        stuck_at = server.latest.global_iteration
        wait_until(lambda: server.viewer_count == 1, timeout=90, what="the stuck viewer to be dropped")
        dropped_at = server.latest.global_iteration
        assert dropped_at > stuck_at  # the loop went on while the viewer was stuck
        wait_until(lambda: watcher.poll() is not None and watcher.viewers == 1, timeout=30,
                   what="the other viewer to hear that one left")
        wait_until(lambda: watcher.poll() is not None and watcher.latest.global_iteration > dropped_at + 100,
                   timeout=30, what="the other viewer to follow the training after the drop")
        assert watcher.alive and server.viewer_count == 1
        assert slowest[0] < 0.25, slowest[0]  # appending to an inbox; a blocking send would hang here
        # the stuck viewer, reading at last, finds what the kernel held, then the end
        stuck.sock.settimeout(10)
        received = 0
        while data := stuck.sock.recv(1 << 20):
            received += len(data)
        assert received > 0
    finally:
        stuck.close()
        watcher.close()


# ---- a foreign user ---------------------------------------------------------------------------------

CHILD = r"""
import json, os, socket, sys
from trainmon.engine.control import wire
import msgspec

path = sys.argv[1]
os.setgroups([])
os.setgid(%(uid)d)
os.setuid(%(uid)d)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(path)
except OSError as exc:
    print(json.dumps({"connect": type(exc).__name__}))
    sys.exit(0)
reader, frames = wire.FrameReader(wire.MAX_SERVER_FRAME), []
sock.settimeout(10)
while True:
    data = sock.recv(65536)
    if not data:
        break
    frames += [msgspec.to_builtins(wire.to_viewer_decoder.decode(b)) for b in reader.feed(data)]
print(json.dumps({"connect": "ok", "frames": frames}))
""" % {"uid": FOREIGN_UID}

needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="switching to a foreign uid needs root")


def as_foreign_user(socket_path: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, str(socket_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def open_folder():
    """A folder anyone may enter (0777), on a short path."""
    folder = Path(tempfile.mkdtemp(prefix="tm-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@needs_root
@pytest.mark.timeout(60)
def test_a_foreign_uid_is_refused_by_the_peer_uid_check(open_folder):
    os.chmod(open_folder, 0o777)
    server = ControlServer(open_folder / "s.sock", "run-test", lambda command: None).start()
    try:
        assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
        os.chmod(server.path, 0o666)  # let the filesystem through: only the uid check is left
        seen = as_foreign_user(server.path)
        assert seen == {"connect": "ok", "frames": [
            {"type": "Error", "reason": f"refused: uid {FOREIGN_UID} is not the run's owner", "fatal": True}]}
        assert server.refused == 1 and server.viewer_count == 0
        mine = RunClient(server.path)  # the owner still gets in
        assert mine.hello.run_id == "run-test"
        mine.close()
    finally:
        server.close()


@pytest.mark.slow
@needs_root
@pytest.mark.timeout(60)
@pytest.mark.parametrize("folder_mode", [0o700, 0o711], ids=["private-folder", "socket-0600"])
def test_a_foreign_uid_cannot_even_connect_through_the_permissions(open_folder, folder_mode):
    os.chmod(open_folder, folder_mode)
    server = ControlServer(open_folder / "s.sock", "run-test", lambda command: None).start()
    try:
        assert as_foreign_user(server.path) == {"connect": "PermissionError"}
        assert server.refused == 0  # refused by the kernel before the server saw anything
    finally:
        server.close()


def test_a_refusal_reaches_the_client_as_a_one_line_connect_error(open_folder):
    """What a foreign viewer sees, simulated by a server that expects another owner."""
    server = ControlServer(open_folder / "s.sock", "run-test", lambda command: None,
                           owner_uid=os.getuid() + 1).start()
    try:
        with pytest.raises(ConnectError, match=rf"^refused: uid {os.getuid()} is not the run's owner$"):
            RunClient(server.path)
        assert server.refused == 1
    finally:
        server.close()


def test_the_socket_file_appears_only_once_it_listens(open_folder, monkeypatch):
    """A viewer waits for the file and connects at once (`--detach`, `lesson`): a file that existed between
    bind and listen refused it (CI, twice). The file is moved into place, replacing a stale one, after listen."""
    from trainmon.engine.control import server as server_module

    final = open_folder / "s.sock"
    final.write_text("stale")  # a crashed engine's leftover
    seen: list[bool] = []

    class Watched(socket.socket):
        def listen(self, *args: Any) -> None:
            seen.append(final.exists() and not final.is_file())  # our socket at the final path already?
            super().listen(*args)

    monkeypatch.setattr(server_module.socket, "socket", Watched)
    server = ControlServer(final, "run-test", lambda command: None).start()
    try:
        assert seen == [False]
        assert stat.S_ISSOCK(os.stat(final).st_mode) and stat.S_IMODE(os.stat(final).st_mode) == 0o600
        assert sorted(p.name for p in open_folder.iterdir()) == ["s.sock"]  # no staging file left
        viewer = RunClient(final)
        assert viewer.hello.run_id == "run-test"
        viewer.close()
    finally:
        server.close()
