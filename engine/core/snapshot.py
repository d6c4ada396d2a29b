"""One `Snapshot` from the loop's units: a pure read of their state, computing nothing of its own.

Torch-free; holds no state (the loop calls it at most `1 / publish_interval` times a second).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.arithmetic import batch_size_at
from trainmon.engine.core.progress import Progress
from trainmon.engine.core.run_control import RunControl
from trainmon.engine.core.schedule import BatchSizePolicy
from trainmon.engine.core.speed import Speed
from trainmon.engine.core.totals import Totals
from trainmon.engine.core.window import AccumulationWindow

if TYPE_CHECKING:
    from trainmon.engine.jobs.job import RunConfig
    from trainmon.engine.run.losses import LossTracker


def build_snapshot(
    *, now: float, active: float, job: str, device: str, config: "RunConfig", dataset_size: Optional[int],
    progress: Progress, control: RunControl, batch_sizes: BatchSizePolicy, window: AccumulationWindow,
    losses: "LossTracker", speed: Speed, totals: Totals, iterations_in_epoch: Optional[int], lr: Optional[float],
    devices: Any, history_version: int, checkpoints: bool = False,
    last_checkpoint: Optional[msg.CheckpointSaved] = None, clipper: Any = None,
    learning_rates: tuple = (), tracked: bool = False,
) -> msg.Snapshot:
    """The snapshot at clock reading `now` (`active`: seconds of it not paused), with `totals` from
    `PlannedTotals.totals` and `iterations_in_epoch` the current epoch's planned iterations."""
    p, status, b, n = progress, control.status, batch_sizes.batch_size, iterations_in_epoch
    total_it, total_steps, total_samples, steps_epoch = totals
    remaining = None if total_it is None else max(0, total_it - p.global_iteration)  # iterations
    moving = not (control.pause_announced or status.final)  # no speed while paused or ended: nothing moves
    return msg.Snapshot(
        status=status, job=job, device=device,
        epoch=p.epoch, epochs=config.epochs,
        iteration_in_epoch=p.iteration_in_epoch, iterations_in_epoch=n,
        last_batch_size=None if n is None or dataset_size is None else batch_size_at(n - 1, dataset_size, b,
                                                                                     config.drop_last),
        batch_size=b, accum=window.accum, drop_last=config.drop_last, lr=lr,
        batch_growth=config.batch_growth, max_batch_size=config.max_batch_size, dataset_size=dataset_size,
        global_iteration=p.global_iteration, total_iterations=total_it,
        global_step=p.global_step, total_steps=total_steps,
        steps_in_epoch=p.steps_in_epoch, steps_per_epoch=steps_epoch,
        samples_seen=p.samples_seen, total_samples=total_samples,
        window_position=p.window_position, window_size=window.size, window_samples=p.window_samples,
        effective_batch_size=b * window.accum,
        loss=losses.last, window_loss=losses.window_loss, epoch_loss=losses.epoch_loss,
        best_loss=losses.best, val_loss=losses.val_loss, val_metrics=dict(losses.val_metrics),
        best_val_loss=losses.best_val_loss, nonfinite_count=losses.nonfinite,
        last_nonfinite_iteration=losses.last_nonfinite,
        # one rate for speed and ETA, shown once settled; none while paused or ended: nothing moves
        iterations_per_second=speed.iterations_per_second if moving and speed.settled else None,
        samples_per_second=speed.samples_per_second if moving and speed.settled else None,
        elapsed=speed.elapsed(now), active_seconds=active,
        validation_seconds=speed.aside["validation"], checkpoint_seconds=speed.aside["checkpoint"],
        epoch_seconds=speed.epoch_seconds,
        eta_seconds=None if status.final else speed.eta.eta(remaining),  # the plan's, paused or not
        pending=control.pending(p.epoch), history_version=history_version, devices=devices, time=now,
        checkpoints=checkpoints, last_checkpoint=last_checkpoint,
        clip_grad_norm=config.clip_grad_norm, grad_norm=clipper.last_norm if clipper is not None else None,
        clipped_steps=clipper.clipped if clipper is not None else 0,
        precision=config.precision, steps_skipped=p.steps_skipped, learning_rates=learning_rates,
        batch_size_off=control.batch_size_off, accum_off=control.accum_off, tracked=tracked,
    )
