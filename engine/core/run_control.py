"""Run control: pause, resume, single steps and stop, and the answer to every command a viewer sends.

Torch-free. The loop asks this unit what to do at each safe point; changes of batch size and
accumulation steps are checked and kept by the units they change (`BatchSizePolicy`,
`AccumulationWindow`).
"""

from __future__ import annotations

from typing import Any, Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.schedule import BatchSizePolicy
from trainmon.engine.core.window import AccumulationWindow


class RunControl:
    """The run's status and its pause/step/stop requests.

    A pause is requested by `Pause` and becomes real (`PAUSED`, a `Paused` event) only when the
    loop waits at a safe point (`announce_pause`). While paused, each `StepOnce` lets one iteration
    through. `Stop` ends the run after the current iteration.

    State (`state_dict`): `status` (a `RunStatus` value), `paused`, `stopping`, `pause_announced`
    (the loop is really waiting) and `steps_allowed` (single iterations requested, not yet run).
    A `SaveCheckpoint` sets `save_requested` (the loop saves at its next safe point) unless
    `checkpoints_off` gives a reason to refuse it; `batch_size_off` and `accum_off` likewise refuse
    changes a loop cannot take (a tracked loop that never reads them).
    """

    def __init__(self, batch_sizes: BatchSizePolicy, window: AccumulationWindow) -> None:
        self.batch_sizes, self.window = batch_sizes, window
        self.status = msg.STARTING
        self.paused = self.stopping = self.pause_announced = False
        self.steps_allowed = 0
        self.checkpoints_off: Optional[str] = "this run keeps no checkpoints"  # why `SaveCheckpoint` is refused
        self.batch_size_off: Optional[str] = None  # why `SetBatchSize` is refused (a tracked loop that never reads it)
        self.accum_off: Optional[str] = None  # why `SetAccum` is refused
        self.save_requested = False

    def handle(self, command: Any, epoch: int, global_iteration: int) -> list[msg.Message]:
        """Apply `command` (or refuse it) after 1-based `epoch` and `global_iteration` iterations.

        Returns the events that answer it, in order: `[CommandRejected]`, or `[CommandAccepted]`
        after any fact it caused (`Resumed`). Never raises.
        """
        reason: Optional[str] = None
        caused: list[msg.Message] = []
        if isinstance(command, msg.Pause):
            if self.paused:
                reason = "already paused"
            else:
                self.paused = True  # PAUSED only when the loop really waits (next safe point)
        elif isinstance(command, msg.Resume):
            if not self.paused:
                reason = "not paused"
            else:
                self.paused, self.steps_allowed = False, 0
                if self.pause_announced:
                    self.pause_announced, self.status = False, msg.RUNNING
                    caused.append(msg.Resumed(global_iteration))
        elif isinstance(command, msg.StepOnce):
            if not self.paused:
                reason = "single-iteration step works only while paused"
            else:
                self.steps_allowed += 1
        elif isinstance(command, msg.Stop):
            self.stopping, self.status = True, msg.STOPPING
        elif isinstance(command, msg.SetBatchSize):
            reason = self.batch_size_off or self.batch_sizes.request(command.batch_size, epoch)
        elif isinstance(command, msg.SetAccum):
            reason = self.accum_off or self.window.request(command.accum)
        elif isinstance(command, msg.SaveCheckpoint):
            reason = self.checkpoints_off
            if reason is None and self.save_requested:
                reason = "a save is already asked for"
            self.save_requested = reason is None or self.save_requested
        else:
            reason = f"unknown command {type(command).__name__}"
        if reason is not None:
            return [msg.CommandRejected(command, reason)]
        return caused + [msg.CommandAccepted(command)]

    @property
    def waiting(self) -> bool:
        """The loop must wait at this safe point: paused, not stopping, no single step granted."""
        return self.paused and not self.stopping and not self.steps_allowed

    def announce_pause(self, global_iteration: int) -> Optional[msg.Paused]:
        """The loop starts waiting: status `PAUSED` and the `Paused` event, once per pause."""
        if self.pause_announced:
            return None
        self.pause_announced, self.status = True, msg.PAUSED
        return msg.Paused(global_iteration)

    def take_step(self) -> bool:
        """Use one granted single step, when paused; True when one was used."""
        if self.paused and self.steps_allowed and not self.stopping:
            self.steps_allowed -= 1
            return True
        return False

    def pending(self, epoch: int) -> tuple[msg.PendingChange, ...]:
        """Changes waiting for their safe point after 1-based `epoch`: batch size, then accumulation steps."""
        changes = (self.batch_sizes.pending_change(epoch), self.window.pending_change())
        return tuple(c for c in changes if c is not None)

    def state_dict(self) -> dict:
        return {"status": self.status.value, "paused": self.paused, "stopping": self.stopping,
                "pause_announced": self.pause_announced, "steps_allowed": self.steps_allowed}

    def load_state_dict(self, state: dict) -> None:
        self.status = msg.RunStatus(state["status"])
        self.paused, self.stopping = state["paused"], state["stopping"]
        self.pause_announced, self.steps_allowed = state["pause_announced"], state["steps_allowed"]
