"""The run directory's event log: whole JSON lines, rotated into gzip segments, within a byte budget.

Files, oldest first: `events-<first seq>.jsonl.gz` segments (each was the live file once; a
background thread compresses it, the plain `events-<seq>.jsonl` is read until then), then the live
`events.jsonl`. Each line is `{"seq", "time", "event"}`; seqs grow but may skip (the numbers of events
folded into an `EventsSummarized`, which takes the last of them).

The bound: the log adds at most `budget` bytes (compressed, as stored) in any day, at any event
rate, plus one live segment. A token bucket of stored bytes pays for each line; while it is empty,
routine events (see `budget.Folder`) are folded into one summary record instead of written, and
every other event is written as it comes. No torch, no textual.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import msgspec

from trainmon.engine.core import messages as msg
from trainmon.engine.record.event_budget import ByteBudget, Folder

LIVE_FILE = "events.jsonl"
SEGMENT_RE = re.compile(r"^events-(\d+)\.jsonl(\.gz)?$")
SEGMENT_BYTES = 2 * 1024 * 1024  # a live file this long (plain bytes) becomes a compressed segment
DAILY_BYTES = 50 * 1000 * 1000  # the run directory's event log stays under this a day, at any rate


def encode_record(value: Any) -> bytes:
    """A message as one line of JSON; NaN and Inf stay numbers (`NaN`, `Infinity`, as Python's json
    writes them; msgspec's JSON would turn them into null and lose a non-finite loss)."""
    return json.dumps(msgspec.to_builtins(value), separators=(",", ":")).encode()


def decode_record(data: Any, type_: Any) -> Any:
    """The inverse of `encode_record` for already-parsed JSON; raises `msgspec.ValidationError`."""
    return msgspec.convert(data, type=type_)


class EventLog:
    """The writer: `append(seq, event)` on the loop's thread (one `os.write` of a whole line, or a
    fold into the pending summary), `close()` at the end (writes the summary, waits for compression).

    `segment_bytes`: plain bytes before the live file rotates; `daily_bytes`: the stored bytes a day
    the log may grow by (the budget keeps a tenth of it as a burst and refills the rest over the day);
    `clock`: seconds, monotonic. `compress_inline` compresses on the caller's thread (tests).
    """

    def __init__(self, folder: Path, segment_bytes: int = SEGMENT_BYTES, daily_bytes: int = DAILY_BYTES,
                 clock: Callable[[], float] = time.monotonic, compress_inline: bool = False) -> None:
        self.folder = Path(folder)
        self.segment_bytes = segment_bytes
        self.budget = ByteBudget(daily_bytes, clock)
        self.folder_of = Folder()
        self.compress_inline = compress_inline
        self._fd: Optional[int] = None
        self._size = 0
        self._first_seq: Optional[int] = None
        self._compressors: list[threading.Thread] = []

    def append(self, seq: int, event: Any, at: Optional[float] = None) -> None:
        """Write `event` as line `seq` stamped `at` (Unix seconds; default now), or fold it while the budget
        is spent (never raises for a full budget; an `OSError` of the disk reaches the caller)."""
        folder = self.folder_of
        folder.observe(event)
        if folder.foldable(event) and (self.budget.spent() or folder.waits_for_epoch_end(event, self.budget.clock())):
            folder.fold(seq, event, self.budget.clock())
            return
        self.flush()
        self._write(seq, event, at)

    def _write(self, seq: int, event: Any, at: Optional[float] = None) -> None:
        if self._fd is None:
            self._fd = os.open(self.folder / LIVE_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._size = os.fstat(self._fd).st_size
        line = b'{"seq":%d,"time":%.3f,"event":' % (seq, time.time() if at is None else at) + encode_record(event) + b"}\n"
        os.write(self._fd, line)
        if self._first_seq is None:
            self._first_seq = seq if self._size == 0 else first_seq_of(self.folder / LIVE_FILE, seq)
        self._size += len(line)
        self.budget.pay(len(line))
        if self._size >= self.segment_bytes:
            self._rotate()

    def _rotate(self) -> None:
        """The live file becomes segment `events-<first seq>.jsonl` (a rename: readers holding it open
        read on), compressed next to it in the background."""
        assert self._fd is not None and self._first_seq is not None
        os.close(self._fd)
        self._fd = None
        plain = self.folder / f"events-{self._first_seq:012d}.jsonl"
        os.rename(self.folder / LIVE_FILE, plain)
        self._first_seq, self._size = None, 0
        self._compressors = [t for t in self._compressors if t.is_alive()]
        if self.compress_inline:
            self._compress(plain)
            return
        thread = threading.Thread(target=self._compress, args=(plain,), name="trainmon-events-gzip", daemon=True)
        self._compressors.append(thread)
        thread.start()

    def _compress(self, plain: Path) -> None:
        """`plain` → `plain.gz` (temporary name, then rename), then `plain` goes; the budget learns the
        real ratio. A failure leaves the plain segment, still read."""
        packed = plain.with_name(plain.name + ".gz")
        tmp = plain.with_name(plain.name + ".gz.tmp")
        try:
            data = plain.read_bytes()
            with open(tmp, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                out.write(gzip.compress(data, compresslevel=6, mtime=0))
            os.rename(tmp, packed)
            self.budget.learn(len(data), packed.stat().st_size)
            os.unlink(plain)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def flush(self) -> None:
        """Write the pending summary, if any (a run that ends or pauses leaves nothing folded)."""
        for out_seq, out_event in self.folder_of.flush():
            self._write(out_seq, out_event)

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for thread in self._compressors:
            thread.join(timeout=30)
        self._compressors = []


def first_seq_of(path: Path, default: int) -> int:
    """The seq of the first line of `path` (an existing live file a resumed engine appends to)."""
    try:
        with open(path, "rb") as f:
            return int(json.loads(f.readline())["seq"])
    except (OSError, ValueError, KeyError, TypeError):
        return default


def segments(folder: Path) -> list[tuple[int, str]]:
    """`(first seq, file name)` of each rotated segment, oldest first; a segment still plain (being
    compressed) is named plain, and its `.gz` is ignored until the plain one goes."""
    found: dict[int, str] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        m = SEGMENT_RE.match(name)
        if m is None:
            continue
        number = int(m.group(1))
        if m.group(2) is None or number not in found:
            found[number] = name
    return sorted(found.items())


def _segment_bytes(folder: Path, name: str) -> bytes:
    if name.endswith(".gz"):
        return gzip.decompress((folder / name).read_bytes())
    try:
        return (folder / name).read_bytes()
    except FileNotFoundError:  # compressed meanwhile
        return gzip.decompress((folder / (name + ".gz")).read_bytes())


def _records(data: bytes, after_seq: int) -> Iterator[tuple[int, Optional[float], Any]]:
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            record = json.loads(line)
            seq = int(record["seq"])
            if seq <= after_seq:
                continue
            when = record.get("time")
            yield seq, None if when is None else float(when), decode_record(record["event"], msg.Event)
        except (ValueError, KeyError, TypeError, msgspec.ValidationError):
            continue


def read_events(folder: Path, after_seq: int = 0) -> Iterator[tuple[int, Any]]:
    """`(seq, event)` for each whole line of the log with seq > `after_seq`, oldest first, across
    segments; a torn or unknown line (a newer trainmon's event) is skipped. Safe while the engine
    writes and rotates: a segment that appears while the live file is read is read before it."""
    for seq, _when, event in read_timed_events(folder, after_seq):
        yield seq, event


def read_timed_events(folder: Path, after_seq: int = 0) -> Iterator[tuple[int, Optional[float], Any]]:
    """`(seq, time, event)` as `read_events` gives them, with the Unix seconds each was recorded at
    (`None` for a line without one): `trainmon logs` ends each line with it."""
    folder = Path(folder)
    seen: set[int] = set()
    last = after_seq
    for attempt in range(8):
        for number, name in segments(folder):
            if number in seen:
                continue
            seen.add(number)
            try:
                data = _segment_bytes(folder, name)
            except (OSError, EOFError):
                continue
            for seq, when, event in _records(data, last):
                last = seq
                yield seq, when, event
        try:
            live = (folder / LIVE_FILE).read_bytes()
        except FileNotFoundError:
            live = b""
        if attempt < 7 and any(number not in seen for number, _ in segments(folder)):
            continue  # the live file rotated while it was read: read the new segment first
        for seq, when, event in _records(live, last):
            last = seq
            yield seq, when, event
        return


def log_bytes(folder: Path) -> int:
    """Bytes the event log holds on disk now (segments, live file, a compression in flight)."""
    total = 0
    for name in os.listdir(folder):
        if name == LIVE_FILE or SEGMENT_RE.match(name) or name.endswith(".jsonl.gz.tmp"):
            try:
                total += (Path(folder) / name).stat().st_size
            except FileNotFoundError:
                pass
    return total
