"""`trainmon resume`: rebuild a stopped run's job, pick its newest readable checkpoint and check that
they fit, before anything trains. Shared by the CLI (headless resume, and the check before a
detached engine starts) and the detached engine.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

from trainmon.engine.core.arithmetic import PlanError
from trainmon.engine.record.checkpoint_files import CHECKPOINT_DIR, CheckpointError, CheckpointStore
from trainmon.engine.run.checkpoint_state import ResumeFrom, check_format, fit_error, optimizer_fit_error

# settings `trainmon resume` may change: they never make the part already trained differ
RESUME_OPTIONS = ("epochs", "checkpoints", "checkpoint_every", "checkpoint_minutes", "keep_checkpoints")


def recorded_iterations(run_dir: Path) -> int:
    """How far the run got before it stopped, by its own records (snapshot and loss history):
    global iterations. 0 when nothing was recorded."""
    from trainmon.engine.record.rundir import read_loss, read_snapshot

    snapshot = read_snapshot(run_dir)
    seen = snapshot.global_iteration if snapshot is not None else 0
    loss = read_loss(run_dir) or {}
    xs = [p[0] for p in loss.get("recent", [])] + [b[1] for b in loss.get("buckets", [])[-1:]]
    return int(max([seen, *xs]))


def foreign(state: dict, run_id: Optional[str], settings: dict[str, Any]) -> Optional[str]:
    """Why a checkpoint is not this run's own (another run's id, another seed); `None` when it is."""
    if run_id and state.get("run") and state["run"] != run_id:
        return f"it belongs to run {state['run']}"
    seed = (state.get("config") or {}).get("seed")
    if seed is not None and seed != settings.get("seed", 0):
        return f"it was trained with seed {seed}, this run with {settings.get('seed', 0)}"
    return None


def prepare_resume(run_dir: Path, settings: dict[str, Any], batch_size: Optional[int] = None,
                   accum: Optional[int] = None, run_id: Optional[str] = None,
                   **changes: Any) -> tuple[Any, Any, list[str], ResumeFrom]:
    """`(job, config, warnings, resume)` to go on with the run in `run_dir` (its run.json `settings`).

    The config is the checkpoint's own, with `changes` (only `RESUME_OPTIONS`) applied; `batch_size`
    and `accum` apply later, like pending changes. Raises `PlanError` (a bad option, an unbuildable
    job) or `CheckpointError` (no readable checkpoint; a job that no longer fits it), one line each.
    """
    from trainmon.engine.jobs.job import RunConfig
    from trainmon.engine.jobs.run_setup import prepare_run

    unknown = set(changes) - set(RESUME_OPTIONS)
    if unknown:
        raise PlanError(f"resume cannot change {', '.join(sorted(unknown))} (it would break exactness)")
    store = CheckpointStore(Path(run_dir) / CHECKPOINT_DIR)
    state, path, skipped = store.load_newest(accept=lambda state: foreign(state, run_id, settings))
    check_format(state)
    names = {f.name for f in fields(RunConfig)}
    recorded = {k: v for k, v in state["config"].items() if k in names}
    recorded.update({k: v for k, v in changes.items() if v is not None})
    seed = recorded.pop("seed")
    _spec, job, config, warnings = prepare_run(settings["target"], settings.get("image_size"), seed, **recorded)
    error = fit_error(job.model, state["model"]) or optimizer_error(job, config, state)
    if error is not None:
        raise CheckpointError(f"the job no longer fits checkpoint {path.name}: {error}")
    position = state["position"]
    check_epochs(position, config.epochs)
    check_changes(job, config, position, batch_size, accum)
    lost = max(0, recorded_iterations(Path(run_dir)) - int(position["global_iteration"]))
    resume = ResumeFrom(state, str(path), tuple(skipped), lost, batch_size, accum)
    return job, config, list(warnings), resume


def optimizer_error(job: Any, config: Any, state: dict) -> Optional[str]:
    """`run_state.optimizer_fit_error` on a throwaway optimizer and scheduler over the job's model (loading
    an optimizer's state never changes the parameters it holds: no copy of the model is needed)."""
    optimizer = job.optimizer(job.model.parameters(), config.lr)
    scheduler = job.lr_scheduler(optimizer) if job.lr_scheduler else None
    return optimizer_fit_error(optimizer, scheduler, state)


def check_epochs(position: dict, epochs: int) -> None:
    """Raise `PlanError` when `epochs` leaves nothing to train after the checkpoint's position."""
    epoch, done = int(position["epoch"]), bool(position["epoch_complete"])
    if done and epoch == epochs:
        raise PlanError(f"the run trained all its {epochs} epochs: give --epochs with more to train on")
    if epoch > epochs or (done and epoch >= epochs):
        where = f"the end of epoch {epoch}" if done else f"epoch {epoch}, iteration {position['iteration_in_epoch']}"
        raise PlanError(f"--epochs {epochs} is fewer than the run already reached ({where}): give --epochs "
                        f"{epoch + 1 if done else epoch} or more")


def check_changes(job: Any, config: Any, position: dict, batch_size: Optional[int], accum: Optional[int]) -> None:
    """Raise `PlanError` (one line) for a new batch size or accumulation steps the run could never
    take, before anything is touched (the loop checks them again when it applies them)."""
    from trainmon.engine.core.arithmetic import whole_number_error
    from trainmon.engine.core.schedule import BatchSizePolicy
    from trainmon.engine.jobs.job import dataset_length

    if batch_size is not None:
        policy = BatchSizePolicy(config.batch_size, config.batch_growth, config.max_batch_size, config.epochs,
                                 dataset_length(job.train_dataset), config.drop_last)
        reason = policy.refusal(batch_size)
        if reason is None and position["epoch"] >= config.epochs:
            reason = "no epoch left to apply a new batch size"
        if reason is not None:
            raise PlanError(f"--batch-size {batch_size}: {reason}")
    if accum is not None:
        error = whole_number_error("accumulation steps", accum)
        if error is not None:
            raise PlanError(f"--accum {accum}: {error}")
