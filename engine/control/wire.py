"""The control socket's wire format: versioned, typed messages as length-prefixed msgpack frames.

Each frame is a 4-byte big-endian length, then one msgpack-encoded tagged struct (msgspec), decoded
into the types below and validated: never pickle, since a socket is an input like any other.
msgpack keeps NaN and Inf losses as numbers. A frame longer than the reader's limit is an error.

Server → viewer: `Hello` on connect; after `Subscribe`, one `Welcome` (current snapshot, whole loss
history and timeline, the events so far), then `Live` snapshots (latest wins, at most the publication rate),
`EventRecord`s and `Viewers` counts; `Error` for anything refused. Viewer → server: `Subscribe`
and the commands of `messages` (answered by `CommandAccepted`/`CommandRejected` events carrying
the command's `id`).
"""

from __future__ import annotations

import struct
from typing import Optional, Union

import msgspec

from trainmon.engine.core import messages as msg
from trainmon.engine.core.history import HistoryDelta
from trainmon.engine.core.timeline import TimelineDelta

PROTOCOL = 1
HEADER = struct.Struct(">I")
MAX_VIEWER_FRAME = 64 * 1024  # what a viewer may send: commands are tiny
MAX_SERVER_FRAME = 64 * 1024 * 1024  # what a viewer accepts: a welcome with a long event log


class Hello(msg.Message, frozen=True):
    """Sent by the engine on connect."""

    protocol: int
    run_id: str
    pid: int


class Subscribe(msg.Message, frozen=True):
    """Viewer: send me the run so far, then follow it live. `steering=False`: a viewer that only
    reads (`trainmon logs -f`), left out of the count of viewers that can steer the run."""

    steering: bool = True


class EventRecord(msg.Message, frozen=True):
    """An event with its sequence number in the run (the same as in events.jsonl)."""

    seq: int
    event: msg.Event


class Welcome(msg.Message, frozen=True):
    """The run so far, once, right after `Subscribe`: `events` are the newest ones the engine keeps."""

    snapshot: Optional[msg.Snapshot]
    history: HistoryDelta
    events: list[EventRecord]
    viewers: int
    run_dir: str
    timeline: Optional[TimelineDelta] = None  # the whole timeline (engine/core/timeline.py)


class Live(msg.Message, frozen=True):
    """The newest snapshot, the loss points and the timeline rows since the viewer's last one (latest wins)."""

    snapshot: msg.Snapshot
    history: HistoryDelta
    timeline: Optional[TimelineDelta] = None


class Viewers(msg.Message, frozen=True):
    """How many steering viewers are subscribed now (this one included)."""

    count: int


class Error(msg.Message, frozen=True):
    """A request was refused; `fatal` means the engine closes the connection after this."""

    reason: str
    fatal: bool = False


ToViewer = Union[Hello, Welcome, Live, EventRecord, Viewers, Error]
ToEngine = Union[Subscribe, msg.Pause, msg.Resume, msg.Stop, msg.StepOnce, msg.SetBatchSize, msg.SetAccum,
                 msg.SaveCheckpoint]

_encoder = msgspec.msgpack.Encoder()


def frame(message: msgspec.Struct) -> bytes:
    """One message as a length-prefixed frame."""
    body = _encoder.encode(message)
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Collects bytes and yields whole frames' bodies; `feed` raises `FrameTooLarge` past `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        bodies = []
        while len(self.buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self.buffer)
            if size > self.limit:
                raise FrameTooLarge(f"frame of {size} bytes exceeds the limit of {self.limit}")
            if len(self.buffer) < HEADER.size + size:
                break
            bodies.append(bytes(self.buffer[HEADER.size : HEADER.size + size]))
            del self.buffer[: HEADER.size + size]
        return bodies


class FrameTooLarge(ValueError):
    """A frame announced more bytes than the reader accepts."""


to_engine_decoder = msgspec.msgpack.Decoder(ToEngine)
to_viewer_decoder = msgspec.msgpack.Decoder(ToViewer)
