"""The Trainer's side of checkpoints: saving at a safe point, and going on from a checkpoint.

A part of `loop.Trainer` kept apart (the loop order stays in loop.py): it reads and sets the
Trainer's units. What a checkpoint holds is engine/run/checkpoint_state.py's; writing it, engine/run/checkpoint_saver.py's.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from trainmon.engine.core import messages as msg
from trainmon.engine.record.checkpoint_files import CheckpointError
from trainmon.engine.run import checkpoint_state as run_state


class Checkpointing:
    """Mixed into `loop.Trainer`; uses its `progress`, units, `channel`, `_saver` and `_publish`."""

    def _emit_all(self, events: list) -> None:
        for event in events:
            self.channel.emit(event)

    def _save(self, reason: str, wait: bool = False) -> None:
        """Save a checkpoint at this safe point: mid-epoch (with the loader's position and any
        accumulated gradients) while an epoch runs, else at the last epoch's end. The loop waits for
        the serialisation only (`wait`: for the file too); nothing happens when nothing changed since
        the last save. A failed save is a `CheckpointFailed` event; the run goes on."""
        self._control.save_requested = False
        p = self.progress
        key = (p.global_iteration, self._changes)
        if not self._saver.enabled or key == self._saver.saved_key:
            return
        self._flush_losses()
        announce = msg.CheckpointSaved("", 0, 0.0, reason, p.epoch, p.iteration_in_epoch, p.global_iteration,
                                       epoch_complete=not self._in_epoch)
        try:
            with self._speed.set_aside("checkpoint", self.clock):  # left out of the rate and the ETA
                state, meta = run_state.capture(self, self._loader if self._in_epoch else None, reason)
                events = self._saver.start(state, meta, key, announce, wait=wait)
        except Exception as exc:  # noqa: BLE001 - a state torch cannot save never ends a run
            from trainmon.engine.jobs.loader import one_line

            events = [msg.CheckpointFailed(one_line(exc), reason, p.global_iteration)]
        self._emit_all(events)
        if events:
            self._publish(force=True)

    def _restore(self) -> int:
        """Take the run back to its checkpoint (`self._resume`); the 0-based epoch index to go on from.
        Raises `CheckpointError` (one line) when the checkpoint does not fit the job or an option."""
        r = self._resume
        assert r is not None
        run_state.restore(self, r.state)
        p = self.progress
        changes = []
        if r.batch_size is not None and (r.batch_size != self._batch_sizes.batch_size or self._batch_sizes.pending):
            reason = self._batch_sizes.request(r.batch_size, p.epoch)  # from the next epoch to start
            if reason is not None:
                raise CheckpointError(f"--batch-size {r.batch_size}: {reason}")
            changes.append(self._batch_sizes.pending_change(p.epoch).describe())
            self._changes += 1
        if r.accum is not None and (r.accum != self._window.accum or self._window.pending):
            reason = self._window.request(r.accum)
            if reason is not None:
                raise CheckpointError(f"--accum {r.accum}: {reason}")
            change = self._window.pending_change()
            if change is not None:
                changes.append(change.describe())
            self._changes += 1
        position = r.state["position"]
        self._saver.saved_key = (p.global_iteration, self._changes)
        self.core.sent_version = 0  # viewers and the recorder get the restored history whole (a reset delta)
        self.core.sent_timeline = 0  # and the restored timeline
        self.channel.emit(msg.RunResumed(r.path, position["epoch"], position["iteration_in_epoch"],
                                         position["global_iteration"], r.lost_iterations, tuple(r.skipped),
                                         tuple(changes)))
        self._resume = None
        if position["epoch_complete"]:
            return int(position["epoch"])
        self._mid_epoch_state = r.state
        return int(position["epoch"]) - 1

    # what engine/run/checkpoint_state.py reads and restores
    @property
    def generator(self) -> torch.Generator:
        """The training loader's generator (shuffling order, workers' base seed)."""
        return self._generator

    def units(self) -> dict[str, Any]:
        """The run's units by name, each with `state_dict()` / `load_state_dict()`."""
        return {"progress": self.progress, "history": self.loss_history, "batch_sizes": self._batch_sizes,
                "window": self._window, "losses": self._losses, "totals": self._totals, "clipping": self._clipper,
                "timeline": self.core.timeline}

    @property
    def run_id(self) -> Optional[str]:
        """The id of the run this trainer trains (its checkpoints say whose they are)."""
        return getattr(self, "_run_id", None)

    def config_record(self) -> dict:
        from dataclasses import asdict

        return asdict(self.config)

    def active_seconds(self) -> float:
        return self._speed.active(self.clock())

    def restore_time(self, active: float) -> None:
        """Go on counting active time from `active` seconds; the gap while stopped is not counted, and
        rates and the ETA are measured afresh (a new process is a new speed regime)."""
        self._speed.restart(self.clock(), active, self.progress.global_iteration)

    def flags(self) -> dict:
        return {"short_epoch_warned": self._short_epoch_warned, "unchecked": sorted(self._unchecked)}

    def restore_flags(self, flags: dict) -> None:
        self._short_epoch_warned = bool(flags["short_epoch_warned"])
        self._unchecked = set(flags["unchecked"])

    def validation_loss(self) -> Optional[float]:
        return self._losses.val_loss
