"""A run's recorded output as a viewer reads it: every rank's file followed, collapsed to terminal lines.
No torch, no textual: the monitor's `o` screen and `trainmon logs --output` both read through here.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Optional

from trainmon.engine.core.terminal_lines import LineCollapser, fold_ranks
from trainmon.engine.record.output_log import OutputFollower, output_name, output_ranks

MAX_LINES = 5000  # lines kept a rank (the newest); the files keep more
TAIL_BYTES = 4 * 1024 * 1024  # read of a rank's output when it is opened: its newest 4 MiB


class RankOutput:
    """One rank's output: finished lines (the newest `max_lines`), the line being written, bytes skipped."""

    def __init__(self, folder: Path, rank: int, max_lines: int = MAX_LINES, tail_bytes: int = TAIL_BYTES) -> None:
        self.rank = rank
        self.follower = OutputFollower(folder, output_name(rank), tail_bytes)
        self.collapser = LineCollapser()
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.dropped = 0  # finished lines that fell out of `lines`
        data, self.skipped_bytes = self.follower.start()
        self._take(data)

    def _take(self, data: bytes) -> list[str]:
        if not data:
            return []
        new = self.collapser.feed(data.decode("utf-8", errors="replace"))
        self.dropped += max(0, len(self.lines) + len(new) - (self.lines.maxlen or 0))
        self.lines.extend(new)
        return new

    def poll(self) -> list[str]:
        """The lines finished since the last poll."""
        return self._take(self.follower.poll())

    @property
    def partial(self) -> str:
        return self.collapser.partial

    def close(self) -> None:
        self.follower.close()


class RunOutput:
    """Every rank's output of the run in `folder` (`[0]` alone for a run that is not distributed); ranks
    that start writing later are picked up by `poll()`."""

    def __init__(self, folder: Path, max_lines: int = MAX_LINES, tail_bytes: int = TAIL_BYTES) -> None:
        self.folder, self.max_lines, self.tail_bytes = Path(folder), max_lines, tail_bytes
        self.ranks: dict[int, RankOutput] = {}
        self._add_new_ranks()

    def _add_new_ranks(self) -> bool:
        added = False
        for rank in output_ranks(self.folder):
            if rank not in self.ranks:
                self.ranks[rank] = RankOutput(self.folder, rank, self.max_lines, self.tail_bytes)
                added = True
        return added

    def poll(self) -> dict[int, list[str]]:
        """Each rank's lines finished since the last poll (ranks with none left out); a rank seen for the
        first time gives all it has."""
        before = set(self.ranks)
        self._add_new_ranks()
        new = {rank: list(out.lines) for rank, out in self.ranks.items() if rank not in before and out.lines}
        for rank, out in self.ranks.items():
            if rank in before:
                lines = out.poll()
                if lines:
                    new[rank] = lines
        return new

    def lines(self, rank: Optional[int] = None, last: Optional[int] = None) -> list[str]:
        """Rank `rank`'s lines, or with `None` every rank's folded (`ranks 1–7: ...`, `fold_ranks`); `last`:
        only the newest that many of each rank."""
        def newest(out: RankOutput) -> list[str]:
            lines = list(out.lines)
            return lines[-last:] if last else lines

        if rank is not None:
            return newest(self.ranks[rank]) if rank in self.ranks else []
        return fold_ranks({r: newest(out) for r, out in self.ranks.items()})

    def partial(self, rank: Optional[int] = None) -> str:
        """The line being written (a progress bar's state): rank `rank`'s, or with `None` rank 0's."""
        out = self.ranks.get(0 if rank is None else rank)
        return out.partial if out is not None else ""

    def skipped_bytes(self, rank: Optional[int] = None) -> int:
        """Older bytes not read (past the opening tail), for one rank or all."""
        return sum(out.skipped_bytes for r, out in self.ranks.items() if rank is None or r == rank)

    def close(self) -> None:
        for out in self.ranks.values():
            out.close()
