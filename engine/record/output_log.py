"""The job's own output in the run directory, bounded: output.log rotated to output.log.1 ... .N.
No torch, no textual.

One file per process that prints: `output.log` for the run (rank 0), `output.rank3.log` for rank 3 of a
torchrun run. A file grows to `file_bytes` (16 MiB by default, `$TRAINMON_OUTPUT_MIB`), then becomes
`<name>.1` (the older ones shift to `.2`, `.3`; past `keep` = 3 the oldest is removed): at most
4 × 16 MiB = 64 MiB a process, the newest 16 to 64 MiB of its output kept. Readers (`read_output`,
`OutputFollower`) put the rotated pieces back in order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

OUTPUT_FILE = "output.log"
FILE_MIB, KEEP = 16.0, 3
SIZE_ENV = "TRAINMON_OUTPUT_MIB"  # MiB a file holds before it is rotated (a test sets a small one)
_RANK_FILE = re.compile(r"^output\.rank(\d+)\.log$")


def output_name(rank: int = 0) -> str:
    """`output.log` for rank 0 (every run that is not distributed), `output.rank<N>.log` for the others."""
    return OUTPUT_FILE if rank == 0 else f"output.rank{rank}.log"


def file_bytes_from_env() -> int:
    """Bytes a file holds before rotation: `$TRAINMON_OUTPUT_MIB` (a positive number) or 16 MiB. A value
    that is not a positive number is ignored (the default holds)."""
    try:
        mib = float(os.environ.get(SIZE_ENV, FILE_MIB))
    except ValueError:
        mib = FILE_MIB
    return int((mib if mib > 0 else FILE_MIB) * 1024 * 1024)


class RotatingOutput:
    """Appends bytes to `folder/name` (0600), rotating it past `file_bytes`; keeps `keep` old files.

    A file never passes the limit: a piece that does not fit is cut after its last whole line that fits,
    the rest goes to the next file. Written
    by one thread (the capture's writer); an `OSError` (disk full) is counted in `failed_bytes`, never raised.
    """

    def __init__(self, folder: Path, name: str = OUTPUT_FILE, file_bytes: Optional[int] = None,
                 keep: int = KEEP) -> None:
        self.path = Path(folder) / name
        self.file_bytes = file_bytes_from_env() if file_bytes is None else file_bytes
        self.keep = keep
        self.failed_bytes = 0
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, data: bytes) -> None:
        try:
            while data:
                room = self.file_bytes - self._size
                if len(data) <= room:
                    self._write_all(data)
                    return
                cut = data.rfind(b"\n", 0, max(room, 0)) + 1  # the file ends with a whole line where it can
                if cut == 0 and self._size == 0:
                    cut = room  # one line longer than a file: cut it
                self._write_all(data[:cut])
                data = data[cut:]
                self._rotate()
        except OSError:
            self.failed_bytes += len(data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._size += len(data)

    def _rotate(self) -> None:
        os.close(self._fd)
        for index in range(self.keep, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if index == self.keep:
                older.unlink(missing_ok=True)
            else:
                newer = self.path.with_name(f"{self.path.name}.{index + 1}")
                if older.exists():
                    older.rename(newer)
        if self.keep:
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def pieces(folder: Path, name: str = OUTPUT_FILE) -> list[Path]:
    """The files of one output, oldest first: the rotated ones that exist (`name.3`, `name.2`, `name.1`), then
    `name` itself (existing or not)."""
    base = Path(folder) / name
    rotated = sorted((p for p in base.parent.glob(f"{name}.*") if p.suffix[1:].isdigit()),
                     key=lambda p: -int(p.suffix[1:]))
    return rotated + [base]


def output_ranks(folder: Path) -> list[int]:
    """The ranks that have recorded output in `folder`: `[0]` for a run that is not distributed (or has
    none yet), else 0 and every rank with an `output.rank<N>.log`."""
    others = sorted(int(m.group(1)) for p in Path(folder).glob("output.rank*.log") if (m := _RANK_FILE.match(p.name)))
    return [0] + others


def read_output(folder: Path, name: str = OUTPUT_FILE, tail_bytes: Optional[int] = None) -> tuple[bytes, int]:
    """`(data, skipped)`: the output's bytes in order across its rotated files; with `tail_bytes`, only
    the last that many (`skipped` says how many earlier bytes were left out)."""
    files = [p for p in pieces(folder, name) if p.exists()]
    sizes = [f.stat().st_size if f.exists() else 0 for f in files]
    skip = max(0, sum(sizes) - tail_bytes) if tail_bytes is not None else 0
    chunks, left = [], skip
    for path, size in zip(files, sizes):
        if left >= size:
            left -= size
            continue
        try:
            with open(path, "rb") as f:
                f.seek(left)
                chunks.append(f.read())
        except FileNotFoundError:  # rotated away while we read: its bytes are in the next name
            pass
        left = 0
    return b"".join(chunks), skip


class OutputFollower:
    """Reads an output as it grows (a live run's viewer): `start()` gives the last `tail_bytes`, each
    `poll()` what was written since, across rotations (the file a rotation renamed is read to its end
    before the new one is opened)."""

    def __init__(self, folder: Path, name: str = OUTPUT_FILE, tail_bytes: int = 4 * 1024 * 1024) -> None:
        self.folder, self.name, self.tail_bytes = Path(folder), name, tail_bytes
        self._file = None
        self._inode: Optional[int] = None

    def start(self) -> tuple[bytes, int]:
        """`(data, skipped)` as `read_output` gives them, then follows from the end of that."""
        self._open(at_end=False)
        current = self._file.read() if self._file is not None else b""
        older = b"".join(p.read_bytes() for p in pieces(self.folder, self.name)[:-1] if p.exists())
        data = older + current
        skipped = max(0, len(data) - self.tail_bytes)
        return data[skipped:], skipped

    def _open(self, at_end: bool) -> None:
        try:
            self._file = open(self.folder / self.name, "rb")
        except FileNotFoundError:
            self._file, self._inode = None, None
            return
        self._inode = os.fstat(self._file.fileno()).st_ino
        if at_end:
            self._file.seek(0, os.SEEK_END)

    def poll(self) -> bytes:
        """The bytes written since the last call (`b''` when none)."""
        if self._file is None:
            self._open(at_end=False)
            return self._file.read() if self._file is not None else b""
        data = self._file.read()
        try:
            inode = os.stat(self.folder / self.name).st_ino
        except FileNotFoundError:
            return data
        if inode != self._inode:  # rotated: the rest of the old file was read above, now the new one
            self._file.close()
            self._open(at_end=False)
            if self._file is not None:
                data += self._file.read()
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
