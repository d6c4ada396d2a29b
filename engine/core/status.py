"""Where a run stands: the one list of run states (the run directory writes the value). No torch, no textual."""

from __future__ import annotations

import enum


class RunStatus(str, enum.Enum):
    """Where a run stands; the one list of run states (the run directory writes the value)."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    LOST = "lost"  # the engine died without a final event (found by a viewer, never set by the loop)

    __str__ = str.__str__
    __format__ = str.__format__

    @property
    def final(self) -> bool:
        """True for the states a run never leaves."""
        return self in FINAL_STATES

    @property
    def label(self) -> str:
        """The status as the TUI's status line shows it: `RUNNING`."""
        return self.value.upper()


STARTING, RUNNING, PAUSED, STOPPING = RunStatus.STARTING, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.STOPPING
FINISHED, STOPPED, FAILED, LOST = RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.FAILED, RunStatus.LOST
FINAL_STATES = frozenset({FINISHED, STOPPED, FAILED, LOST})
