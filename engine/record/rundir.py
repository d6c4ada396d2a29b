"""A run's directory: its identity and status, its event log, its loss history and its output.

```
<run dir>/run.json        identity, settings, status (replaced atomically)
          snapshot.json   the latest snapshot (replaced atomically, every ~2 s and at the end)
          events.jsonl    one JSON line per event, appended whole ({"seq", "time", "event"}); past 2 MB
                          it becomes events-<seq>.jsonl.gz; routine events are folded past 50 MB a day
                          (event_log.py)
          loss.json       LossArchive: recent iterations exactly, older as count/mean/min/max
          timeline.json   the timeline (engine/core/timeline.py): counts, time, lr, grad norm, speed,
                          data wait, memory, one row a publication, thinned past 2048 rows
          output.log      the job's own stdout and stderr (detached engine)
          engine.lock     held (flock) by the engine while it lives: free + not final = lost
```

Directories are 0700 and files 0600: on a shared GPU box nobody else reads a run. Readers never see
a half-written record: small files are replaced by rename, the log only gets whole lines.
No torch, no textual.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import msgspec

from trainmon.engine.core import messages as msg
from trainmon.engine.core.timeline import Timeline
from trainmon.engine.record.event_log import EventLog, decode_record, encode_record
from trainmon.engine.record.event_log import read_events as read_log
from trainmon.engine.record.paths import make_private_dir, runs_root
from trainmon.engine.record.write_behind import WriteBehind

RUN_FILE, SNAPSHOT_FILE, EVENTS_FILE, LOSS_FILE, OUTPUT_FILE, LOCK_FILE = (
    "run.json", "snapshot.json", "events.jsonl", "loss.json", "output.log", "engine.lock")
TIMELINE_FILE = "timeline.json"
FORMAT = 1


class RunNotFound(LookupError):
    """No run matches what was asked for; the message is one line."""


def write_atomic(path: Path, data: bytes, durable: bool = False) -> None:
    """Replace `path` with `data` so a reader sees the old or the new file, never half of one.

    Writes a temporary file in the same folder (mode 0600), all of `data` (one `os.write` stops short
    of large data), fsyncs it when `durable`, renames it over `path`, and fsyncs the folder when
    `durable`. On any error the temporary file is removed and `path` is untouched.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def encode_loss(data: dict[str, Any]) -> bytes:
    """loss.json's bytes: msgspec's JSON, ~4× faster than the json module's on a full archive (~45,000
    floats; the writer thread holds the GIL while it encodes). Its points are finite (non-finite losses
    are kept apart as strings); should an aggregate overflow to Inf, which msgspec would write as null,
    the json module writes it as Python reads it back (`Infinity`)."""
    data_bytes = msgspec.json.encode(data)
    if b"null" in data_bytes:
        return json.dumps(data, separators=(",", ":")).encode()
    return data_bytes


def dump_json(data: Any) -> bytes:
    return (json.dumps(data, indent=1, default=_json_default, allow_nan=False) + "\n").encode()


class RunDirectory:
    """The writer's side of one run directory (the engine, or the launcher creating it).

    `create()` makes the folder and run.json; `open()` attaches an existing one (the engine, after
    the launcher created it). `lock()` takes engine.lock for the engine's lifetime.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._events: Optional[EventLog] = None
        self._behind: Optional[WriteBehind] = None
        self._lock_fd: Optional[int] = None
        self.info: dict[str, Any] = {}

    @classmethod
    def create(cls, path: Path, info: dict[str, Any]) -> "RunDirectory":
        """Make `path` (0700; refused when it exists and is not empty) and write run.json from `info`."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(f"run directory {path} already exists and is not empty")
        make_private_dir(path)  # only the run's own folder: a --run-dir's parent is the user's, left as it is
        run = cls(path)
        run.info = {"format": FORMAT, "status": msg.STARTING.value, **info}
        run.write_info()
        return run

    @classmethod
    def open(cls, path: Path) -> "RunDirectory":
        run = cls(path)
        run.info = json.loads((run.path / RUN_FILE).read_text())
        return run

    # ---- engine side ------------------------------------------------------------------------
    def lock(self) -> None:
        """Hold engine.lock until this process ends (the kernel frees it on any death, kill -9 too).
        Raises `BlockingIOError` while another engine holds it; holding it already is fine."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        self._lock_fd = fd

    def write_behind(self) -> None:
        """From now on run.json, snapshot.json and loss.json are replaced, and events appended, on a writer
        thread (the engine: its loop never waits on the disk nor encodes an event); a durable write waits
        for what is queued, then writes."""
        if self._behind is None:
            self._behind = WriteBehind(write_atomic)
            atexit.register(self._behind.close)  # a process that ends without close() still writes what it queued

    def _replace(self, path: Path, data: Union[bytes, Callable[[], bytes]], durable: bool) -> None:
        """`data`: the bytes, or a function that makes them (on the writer thread when there is one)."""
        if self._behind is not None and not durable:
            self._behind.submit(path, data)
            return
        if self._behind is not None:
            self._behind.drain()  # an older version still queued lands first, never over this one
        write_atomic(path, data if isinstance(data, bytes) else data(), durable)

    def encode_seconds(self) -> float:
        """Seconds the writer thread took to make the bytes of the files handed to it as functions, the last
        time for each (0 without a writer thread): its share of the GIL."""
        return sum(self._behind.encode_seconds.values()) if self._behind is not None else 0.0

    def write_info(self, durable: bool = False) -> None:
        self.info["updated_unix"] = time.time()
        self._replace(self.path / RUN_FILE, dump_json(self.info), durable)

    def update(self, durable: bool = False, **fields: Any) -> None:
        self.info.update(fields)
        self.write_info(durable)

    def append_event(self, seq: int, event: Any) -> None:
        """One whole line per event (a single write), or folded into a summary past the day's bytes."""
        if self._events is None:
            self._events = EventLog(self.path)
        if self._behind is not None:  # in order, stamped now; encoded and written on the writer thread
            self._behind.call(self._events.append, seq, event, time.time())
        else:
            self._events.append(seq, event)

    def write_snapshot(self, snapshot: msg.Snapshot, durable: bool = False) -> None:
        self._replace(self.path / SNAPSHOT_FILE, lambda: encode_record(snapshot) + b"\n", durable)  # frozen: later

    def write_loss(self, archive: Union[dict[str, Any], Callable[[], dict[str, Any]]], durable: bool = False) -> None:
        """loss.json from `LossArchive.to_dict()`, or from a function that makes it (`LossArchive.frozen()`:
        built and encoded on the writer thread, not the loop's)."""
        self._replace(self.path / LOSS_FILE, lambda: encode_loss(archive if isinstance(archive, dict) else archive()),
                      durable)

    def write_timeline(self, state: Union[dict[str, Any], Callable[[], Any]], durable: bool = False) -> None:
        """timeline.json from `Timeline.state_dict()`, or a function that makes it (`Timeline.frozen()`), on the
        writer thread like loss.json."""
        self._replace(self.path / TIMELINE_FILE, lambda: msgspec.json.encode(  # NaN → null
            state if isinstance(state, dict) else state()), durable)

    def flush_events(self) -> None:
        """Write what the event log has folded (before a final status: the records are whole)."""
        if self._events is not None:
            if self._behind is not None:
                self._behind.call(self._events.flush)
            else:
                self._events.flush()

    def close(self) -> None:
        if self._behind is not None:
            self._behind.drain()  # the events still queued are written before the log closes
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._behind is not None:
            behind, self._behind = self._behind, None
            behind.close()
            atexit.unregister(behind.close)


# ---- reader side ---------------------------------------------------------------------------
@dataclass
class RunInfo:
    """What `trainmon ls` and viewers know of a run from its directory alone."""

    path: Path
    info: dict[str, Any]
    status: msg.RunStatus
    snapshot: Optional[msg.Snapshot] = None
    last_activity: Optional[float] = None  # Unix seconds: the last iteration or event (`last_activity()`)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.info.get("id", self.path.name))

    @property
    def live(self) -> bool:
        return not self.status.final

    @property
    def socket_path(self) -> Optional[str]:
        return self.info.get("socket")


def engine_alive(path: Path) -> bool:
    """True while an engine holds the run's engine.lock (free lock = no engine process)."""
    try:
        fd = os.open(Path(path) / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return False


def read_run(path: Path) -> RunInfo:
    """Read a run directory. A run whose status is not final but whose engine holds no lock (it
    died: kill -9, OOM killer, reboot) comes back as `lost`. Raises `RunNotFound` without run.json.
    A link (a `--run-dir` run listed under the runs folder) is followed to the real folder."""
    path = Path(path).resolve()
    try:
        info = json.loads((path / RUN_FILE).read_text())
    except FileNotFoundError:
        raise RunNotFound(f"{path} is not a trainmon run directory (no {RUN_FILE})") from None
    except (OSError, ValueError) as exc:
        raise RunNotFound(f"{path}: cannot read {RUN_FILE}: {exc}") from None
    try:
        status = msg.RunStatus(info.get("status", "starting"))
    except ValueError:
        status = msg.LOST
    snapshot = read_snapshot(path)
    # run.json's status is the current one: the recorder rewrites it at every change, while
    # snapshot.json is written every ~2 s (its status may be that old)
    if not status.final:
        if not engine_alive(path) and info.get("host", socket.gethostname()) == socket.gethostname():
            status = msg.LOST
    return RunInfo(path, info, status, snapshot, last_activity(path, snapshot))


def last_activity(path: Path, snapshot: Optional[msg.Snapshot]) -> Optional[float]:
    """Unix seconds of the run's last iteration or event (`ls`'s LAST ACTIVITY): the newest of run.json and the
    event log's writes and the last iteration by the snapshot's liveness (its heartbeat time less the
    iteration's age). snapshot.json's own write is no activity (a heartbeat rewrites it while the loop is
    stuck), except for a snapshot from before liveness; `None` when nothing is known."""
    live = snapshot.liveness if snapshot is not None else None
    files = (RUN_FILE, EVENTS_FILE) if live is not None else (RUN_FILE, SNAPSHOT_FILE, EVENTS_FILE)
    times = []
    for name in files:
        try:
            times.append((path / name).stat().st_mtime)
        except FileNotFoundError:  # no event yet, or the log rotating this moment
            pass
    if live is not None and live.beat and live.iteration_age is not None:
        times.append(live.beat - live.iteration_age)
    return max(times) if times else None


def read_snapshot(path: Path) -> Optional[msg.Snapshot]:
    try:
        return decode_record(json.loads((Path(path) / SNAPSHOT_FILE).read_bytes()), msg.Snapshot)
    except (OSError, ValueError, msgspec.ValidationError):
        return None


def read_events(path: Path, after_seq: int = 0) -> Iterator[tuple[int, Any]]:
    """`(seq, event)` for each whole line of the run's event log (every segment, oldest first) with
    seq > `after_seq`; a torn or unknown line (a newer trainmon's event) is skipped."""
    return read_log(Path(path), after_seq)


def read_loss(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads((Path(path) / LOSS_FILE).read_text())
    except (OSError, ValueError):
        return None


def read_timeline(path: Path) -> Optional[dict[str, Any]]:
    """timeline.json as `Timeline.load_state_dict` takes it; `None` when missing or unreadable (older runs)."""
    try:
        data = json.loads((Path(path) / TIMELINE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recorded_timeline(path: Any) -> Timeline:
    """The run directory's timeline.json as a `Timeline` (empty for a run recorded before it, or unreadable)."""
    timeline = Timeline()
    data = read_timeline(path)
    if data is not None:
        try:
            timeline.load_state_dict(data)
        except (msgspec.ValidationError, TypeError, ValueError):
            timeline.clear()
    return timeline


def list_runs(root: Optional[Path] = None) -> list[RunInfo]:
    """Every readable run under `root` (default `runs_root()`), oldest first."""
    root = runs_root() if root is None else Path(root)
    if not root.is_dir():
        return []
    runs = []
    for child in root.iterdir():
        if (child / RUN_FILE).exists():
            try:
                run = read_run(child)
            except RunNotFound:
                continue
            if child.is_symlink() and run.id != child.name:
                continue  # a --run-dir folder reused by a later run: this link is stale
            runs.append(run)
    return sorted(runs, key=lambda r: (r.info.get("started_unix") or 0, r.id))


def resolve_run(what: Optional[str], root: Optional[Path] = None, live_only: bool = False) -> RunInfo:
    """The run meant by `what`: a path to a run directory, an id, a unique prefix of one, or a unique
    prefix of an id's tag (its last `-` part: `7bd6` of `20261207-061957-digits-7bd6`, as `compare` heads
    its columns) where no id starts with `what`; without
    `what`, the newest live run (or, with `live_only=False`, the newest run when none is live).

    Raises `RunNotFound` with one line: no runs, no match, or an ambiguous prefix (listing them).
    """
    if what:
        candidate = Path(what).expanduser()
        if (candidate / RUN_FILE).exists():
            return read_run(candidate)
    runs = list_runs(root)
    if what:
        exact = [r for r in runs if r.id == what or r.path.name == what]
        matches = exact or [r for r in runs if r.id.startswith(what) or r.path.name.startswith(what)]
        if not matches and "-" not in what:  # the tag `compare` and `ls` end an id with
            matches = [r for r in runs if r.id.rsplit("-", 1)[-1].startswith(what)]
        if not matches:
            raise RunNotFound(f"no run matches {what!r} (see `trainmon ls`)")
        if len(matches) > 1:
            names = ", ".join(r.id for r in matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise RunNotFound(f"{what!r} matches {len(matches)} runs: {names}")
        return matches[0]
    live = [r for r in runs if r.live]
    if live:
        return live[-1]
    if live_only or not runs:
        where = runs_root() if root is None else root
        raise RunNotFound(f"no live run of yours under {where}" + ("" if runs else " (no runs at all)"))
    return runs[-1]


def engine_identity() -> dict[str, Any]:
    """Host, pid and versions for run.json (torch's version only when torch is already imported)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        trainmon_version = version("trainmon")
    except PackageNotFoundError:
        trainmon_version = "unknown"
    torch = sys.modules.get("torch")
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "trainmon_version": trainmon_version,
        "torch_version": getattr(torch, "__version__", None),
    }
