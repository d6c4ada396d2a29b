"""Parts of a `Snapshot` that are messages of their own: a change waiting for its safe point, one rank's
figures. Re-exported by `engine.core.messages` (readers say `msg.PendingChange`)."""

from __future__ import annotations

from typing import Optional

from trainmon.engine.core.message_base import Message


class PendingChange(Message):
    """A change that waits for its safe point, e.g. batch size 64 → 128 at the start of epoch 4."""

    what: str  # "batch size" or "accumulation steps"
    old: int
    new: int
    applies_at: str  # "start of epoch 4", "next window (global iteration 120)"

    def describe(self) -> str:
        return f"{self.what} {self.old} → {self.new} at {self.applies_at}"


class RankFigures(Message):
    """One rank's figures in a distributed run, gathered by rank 0 at the publication rate (never per
    iteration). Counts are completed ones; memory in MiB (torch allocated on CUDA, host RSS on the CPU)."""

    rank: int
    host: str = ""
    global_iteration: int = 0
    iterations_per_second: Optional[float] = None
    loss: Optional[float] = None  # this rank's last finite iteration loss (its own micro-batch's mean)
    memory_mib: Optional[float] = None
    memory_source: str = ""  # "torch allocated" or "host RSS"
    device: str = ""
    hung: bool = False  # rank 0's watch finds it hung: silent, or behind while no rank moves (rank_health.py)
