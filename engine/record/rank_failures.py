"""Which rank failed first, and why: a small file per failed rank in the run directory.

When one rank raises, the others learn of it only as a broken collective (gloo: the peer closed its
connection) or a kill from torchrun's agent, which ends every worker once one failed. So a rank that
fails writes `ranks/failed-<rank>.json` (its one-line message and a wall-clock time) before it exits;
rank 0 reports the earliest one — the root cause — as the run's `Failed` ("rank 1: RuntimeError:
..."). A `FailureWatch` thread on rank 0 covers a rank 0 stuck in a collective that never returns
(NCCL without an async error handler): it reports the peer's failure and ends the process.
Torch-free; JSON only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from trainmon.engine.core import messages as msg

FAILURE_DIR = "ranks"


def failure_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / FAILURE_DIR


def write_failure(folder: Optional[str | Path], rank: int, failed: msg.Failed,
                  clock: Callable[[], float] = time.time) -> None:
    """Record rank `rank`'s failure (atomically: a temporary file renamed). Never raises."""
    if folder is None:
        return
    try:
        path = Path(folder)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        record = {"rank": rank, "time": clock(), "message": failed.message, "traceback": failed.traceback,
                  "user_traceback": failed.user_traceback, "phase": failed.phase}
        tmp = path / f".failed-{rank}.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path / f"failed-{rank}.json")
    except OSError:
        pass


def read_failures(folder: Optional[str | Path]) -> list[dict]:
    """Every recorded rank failure, earliest first."""
    if folder is None:
        return []
    records = []
    for path in sorted(Path(folder).glob("failed-*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: (r.get("time", 0.0), r.get("rank", 0)))


def as_failed(record: dict) -> msg.Failed:
    """A recorded failure as the run's `Failed`, its message prefixed `rank R: `."""
    return msg.Failed(message=f"rank {record['rank']}: {record['message']}", traceback=record.get("traceback", ""),
                      user_traceback=record.get("user_traceback", ""), phase=record.get("phase", "training"))


def root_cause(folder: Optional[str | Path], rank: int, own: msg.Failed) -> msg.Failed:
    """Record `own` (this rank's failure) and return the run's failure: the earliest rank's."""
    write_failure(folder, rank, own)
    records = read_failures(folder)
    return as_failed(records[0]) if records else as_failed({"rank": rank, "message": own.message,
                                                            "traceback": own.traceback,
                                                            "user_traceback": own.user_traceback,
                                                            "phase": own.phase})


class FailureWatch:
    """Rank 0's watch for another rank's failure file, polled every `interval` seconds on its own thread.

    When one appears and rank 0 has not ended by itself `grace` seconds later (its collective raised
    and its loop reported the failure: `done()` true), `on_failure(failed)` is called with the root
    cause — it records the run and ends the process. `stop()` ends the watch."""

    def __init__(self, folder: str | Path, on_failure: Callable[[msg.Failed], None], done: Callable[[], bool],
                 interval: float = 0.25, grace: float = 3.0) -> None:
        self.folder, self.on_failure, self.done = folder, on_failure, done
        self.interval, self.grace = interval, grace
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="trainmon-rank-failures", daemon=True)

    def start(self) -> "FailureWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        seen: Optional[float] = None
        while not self._stop.wait(self.interval):
            records = [r for r in read_failures(self.folder) if r.get("rank") != 0]
            if not records:
                continue
            now = time.monotonic()
            seen = now if seen is None else seen
            if now - seen >= self.grace and not self.done() and not self._stop.is_set():
                self.on_failure(as_failed(read_failures(self.folder)[0]))
                return
