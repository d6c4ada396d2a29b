"""A run's checkpoint files: written atomically, pruned to the last few plus the best, read back safely.

```
<run dir>/checkpoints/ckpt-000007.pt    one torch.save'd dict per checkpoint, numbered in save order
                      index.json        what each holds (position, val loss, size), for `ls` and pruning
```

A save writes a temporary file in the same folder, fsyncs it, renames it over and fsyncs the
folder, so a `kill -9` during a save leaves every earlier checkpoint whole. Loading uses
`torch.load(weights_only=True)`: a checkpoint is tensors and plain containers, never code.
The numbered files are the truth; the index only describes them (a file the index misses is still
loaded, a name the index lists without a file is ignored).
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from trainmon.engine.record.rundir import write_atomic

CHECKPOINT_DIR = "checkpoints"
INDEX_FILE = "index.json"
FORMAT = 1  # of the dict a checkpoint holds (engine/run/checkpoint_state.py)
_NAME = re.compile(r"^ckpt-(\d{6,})\.pt$")


class CheckpointError(Exception):
    """A checkpoint cannot be used: none readable, or it does not fit the job. The message is one line."""


@dataclass(frozen=True)
class SavedCheckpoint:
    """One save: its file, size in bytes and the seconds it took (serialisation, fsync and rename)."""

    path: Path
    size: int
    seconds: float


class CheckpointStore:
    """The checkpoints of one run, in `folder` (made 0700 on the first save).

    `keep` (≥ 1): how many of the newest checkpoints stay; the one with the lowest validation loss
    (`meta["val_loss"]`, epoch-end checkpoints only) stays too. `clock` gives seconds (monotonic).
    """

    def __init__(self, folder: Path, keep: int = 2, clock: Any = time.monotonic) -> None:
        self.folder = Path(folder)
        self.keep, self.clock = keep, clock

    # ---- writing -----------------------------------------------------------------------------
    @staticmethod
    def serialize(state: dict) -> bytes:
        """`state` as the bytes of a checkpoint file (`torch.save`): a copy taken now, so training may
        change the tensors right after."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def save(self, state: dict, meta: dict) -> SavedCheckpoint:
        """Write `state` as the next checkpoint now (`serialize`, then `write`)."""
        start = self.clock()
        return self.write(self.serialize(state), meta, start)

    def write(self, data: bytes, meta: dict, started: Optional[float] = None) -> SavedCheckpoint:
        """Write serialized `data` as the next checkpoint, durably and atomically, record `meta` (JSON-able:
        the position, `val_loss`...) in the index, and prune; `seconds` counts from `started` (a clock
        reading; default now). One writer at a time (the loop's writer thread). Raises `OSError` (disk
        full, permissions); the files before it are untouched then."""
        start = self.clock() if started is None else started
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        seq = max((s for s, _ in self._files()), default=0) + 1
        path = self.folder / f"ckpt-{seq:06d}.pt"
        write_atomic(path, data, durable=True)
        index = self.index()
        index[path.name] = {**meta, "size": len(data), "saved_unix": time.time()}
        self._prune(index)
        return SavedCheckpoint(path, len(data), self.clock() - start)

    def _prune(self, index: dict) -> None:
        """Keep the newest `keep` files and the best by validation loss; delete the rest; rewrite the index."""
        names = [path.name for _, path in self._files()]
        keep = set(names[-self.keep:]) | {name for name in names if name not in index}  # unknown: maybe the best
        scored = [(entry["val_loss"], name) for name, entry in index.items()
                  if name in names and entry.get("epoch_complete") and isinstance(entry.get("val_loss"), (int, float))]
        if scored:
            keep.add(min(scored)[1])
        for name in names:
            if name not in keep:
                (self.folder / name).unlink(missing_ok=True)
        kept = {name: entry for name, entry in index.items() if name in keep}
        write_atomic(self.folder / INDEX_FILE, json.dumps(kept, indent=1).encode())

    # ---- reading -----------------------------------------------------------------------------
    def _files(self) -> list[tuple[int, Path]]:
        """`(number, path)` of every checkpoint file, oldest first."""
        if not self.folder.is_dir():
            return []
        found = []
        for child in self.folder.iterdir():
            match = _NAME.match(child.name)
            if match:
                found.append((int(match.group(1)), child))
        return sorted(found)

    def index(self) -> dict[str, dict]:
        """File name → what the index says of it (`{}` when there is no readable index)."""
        try:
            data = json.loads((self.folder / INDEX_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def paths(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        return [path for _, path in self._files()]

    def load_newest(self, map_location: Any = "cpu",
                    accept: Optional[Callable[[dict], Optional[str]]] = None) -> tuple[dict, Path, list[str]]:
        """The newest checkpoint that loads: `(state, path, skipped)`, `skipped` one line per newer file
        that could not be read (truncated, corrupt, another format) or that `accept(state)` refused
        (its reason).

        Loads with `torch.load(weights_only=True)`. Raises `CheckpointError` when none is usable.
        """
        skipped: list[str] = []
        for _, path in reversed(self._files()):
            try:
                state = torch.load(path, map_location=map_location, weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped, with its reason
                skipped.append(f"{path.name}: unreadable ({_first_line(exc)})")
                continue
            if not isinstance(state, dict) or state.get("format") != FORMAT:
                got = state.get("format") if isinstance(state, dict) else type(state).__name__
                skipped.append(f"{path.name}: not a trainmon checkpoint of format {FORMAT} (got {got!r})")
                continue
            reason = accept(state) if accept is not None else None
            if reason is not None:
                skipped.append(f"{path.name}: {reason}")
                continue
            return state, path, skipped
        where = f"{self.folder}"
        if not skipped:
            raise CheckpointError(f"no checkpoint in {where} (none was saved — --no-checkpoints, or the run "
                                  f"stopped before its first save — or they were deleted)")
        raise CheckpointError(f"no readable checkpoint in {where}: " + "; ".join(skipped))


def _first_line(exc: BaseException, limit: int = 120) -> str:
    """`jobs.loader.one_line`, cut at `limit` characters (torch's unpickling errors run long)."""
    from trainmon.engine.jobs.loader import one_line

    line = one_line(exc)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe(meta: Optional[dict]) -> str:
    """`epoch 3, iteration 17 (global iteration 107)` for an index entry; '' without one."""
    if not meta:
        return ""
    return (f"epoch {meta.get('epoch')}, iteration {meta.get('iteration_in_epoch')} "
            f"(global iteration {meta.get('global_iteration')})")
