"""What a checkpoint holds and how it goes back: model, optimizer, scheduler, every RNG, the data
position, the accumulated gradients and the run's own units — so a resumed run is the same run.

The dict is tensors and plain containers only (`torch.load(weights_only=True)` reads it back).
"""

from __future__ import annotations

import random
import sys
from typing import Any, Optional

import torch

from trainmon.engine.record.checkpoint_files import FORMAT, CheckpointError


# ---- random number generators ----------------------------------------------------------------
def rng_state(loader_generator: torch.Generator) -> dict:
    """Every RNG a run draws from: torch's CPU generator, each CUDA device's (when CUDA is in use),
    numpy's global one (when numpy is imported), Python's `random`, and the data loader's generator
    (the shuffling order and the workers' base seed)."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"torch": torch.get_rng_state(),
                             # 625 words as one tensor: pickling them one by one costs more than the model
                             "python": (version, torch.tensor(internal, dtype=torch.int64), gauss),
                             "loader": loader_generator.get_state(), "cuda": None, "numpy": None}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        np_state = numpy.random.get_state(legacy=False)
        state["numpy"] = {"bit_generator": np_state["bit_generator"],
                          "key": torch.from_numpy(np_state["state"]["key"].astype("int64")),
                          "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                          "gauss": float(np_state["gauss"])}
    return state


def set_rng_state(state: dict, loader_generator: torch.Generator) -> None:
    """Put back what `rng_state` took (CUDA only where the same devices are in use again)."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
    loader_generator.set_state(state["loader"])
    if state.get("cuda") is not None and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("numpy")
    if saved is not None:
        import numpy

        numpy.random.set_state({"bit_generator": saved["bit_generator"],
                                "state": {"key": saved["key"].numpy().astype("uint32"), "pos": saved["pos"]},
                                "has_gauss": saved["has_gauss"], "gauss": saved["gauss"]})


# ---- the model's fit -------------------------------------------------------------------------
def shape(value: Any) -> str:
    return "(" + ", ".join(str(d) for d in value.shape) + ")" if hasattr(value, "shape") else type(value).__name__


def fit_error(model: torch.nn.Module, saved: dict) -> Optional[str]:
    """Why the checkpoint's model state does not fit `model` (a missing or unexpected key, a shape),
    naming the first mismatch; `None` when it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    for key, value in own.items():
        if key in saved and hasattr(value, "shape") and hasattr(saved[key], "shape") and value.shape != saved[key].shape:
            return (f"parameter {key!r} has shape {shape(saved[key])} in the checkpoint but {shape(value)} in the "
                    f"job's model")
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"the job's model has {missing[0]!r}{more}, which the checkpoint lacks"
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        return f"the checkpoint has {unexpected[0]!r}{more}, which the job's model lacks"
    return None


def classes(optimizer: Any, scheduler: Any) -> dict:
    """The optimizer's and the scheduler's class names (`None` without a scheduler)."""
    return {"optimizer": type(optimizer).__name__,
            "scheduler": None if scheduler is None else type(scheduler).__name__}


def optimizer_fit_error(optimizer: Any, scheduler: Any, state: dict) -> Optional[str]:
    """Why the checkpoint's optimizer or scheduler state does not fit the job's (another class, other
    parameter groups); `None` when it fits. Loads into `optimizer` and `scheduler`: give throwaway ones."""
    saved = state.get("classes") or {}
    own = classes(optimizer, scheduler)
    for what in ("optimizer", "scheduler"):
        if what in saved and saved[what] != own[what]:
            return f"the job's {what} is {own[what] or 'none'}, the checkpoint's {saved[what] or 'none'}"
    try:
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        return f"its {type(optimizer).__name__} state does not load ({type(exc).__name__}: {text})"
    return None


def gradients(model: torch.nn.Module) -> list[Optional[torch.Tensor]]:
    """The gradients accumulated so far in an open window, one per parameter (in `parameters()` order)."""
    return [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]


def set_gradients(model: torch.nn.Module, grads: list[Optional[torch.Tensor]]) -> None:
    params = list(model.parameters())
    if len(grads) != len(params):
        raise CheckpointError(f"the checkpoint holds gradients for {len(grads)} parameters, the model has "
                              f"{len(params)}")
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.to(p.device)


# ---- the whole state -------------------------------------------------------------------------
def check_format(state: dict) -> None:
    if state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint format {state.get('format')!r} is not this trainmon's ({FORMAT})")


def capture(trainer: Any, loader: Any, reason: str) -> tuple[dict, dict]:
    """`(state, meta)` of `trainer` at a safe point: `state` for `torch.save`, `meta` (JSON) for the
    checkpoint index. `loader` is the training epoch's `StatefulDataLoader` mid-epoch, `None` at an
    epoch's end. The loss tracker must have been flushed."""
    p = trainer.progress
    epoch_complete = loader is None
    position = {"epoch": p.epoch, "iteration_in_epoch": p.iteration_in_epoch, "global_iteration": p.global_iteration,
                "global_step": p.global_step, "samples_seen": p.samples_seen, "epoch_complete": epoch_complete}
    state = {
        "format": FORMAT, "run": trainer.run_id, "job": trainer.job.name, "config": trainer.config_record(),
        "reason": reason, "classes": classes(trainer.optimizer, trainer.scheduler),
        "position": position,
        "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "grads": gradients(trainer.model) if p.window_position > 0 else None,
        "scaler": trainer.scaler.state_dict() if getattr(trainer, "scaler", None) is not None else None,
        "rng": rng_state(trainer.generator), "loader": loader.state_dict() if loader is not None else None,
        "units": {name: unit.state_dict() for name, unit in trainer.units().items()},
        "active_seconds": trainer.active_seconds(),
        "flags": trainer.flags(),
    }
    meta = {**position, "reason": reason, "val_loss": trainer.validation_loss() if epoch_complete else None}
    return state, meta


def restore(trainer: Any, state: dict) -> None:
    """Put `state` (from `capture`) back into a set-up `trainer`: model (checked to fit first: raises
    `CheckpointError` naming the mismatch), optimizer, scheduler, units, time, RNGs."""
    check_format(state)
    error = fit_error(trainer.model, state["model"])
    if error is not None:
        raise CheckpointError(f"the job no longer fits its checkpoint: {error}")
    trainer.model.load_state_dict(state["model"])
    error = optimizer_fit_error(trainer.optimizer, trainer.scheduler, state)
    if error is not None:
        raise CheckpointError(f"the job no longer fits its checkpoint: {error}")
    units = trainer.units()
    for name, unit in units.items():
        if name in ("clipping", "timeline") and name not in state["units"]:
            continue  # checkpoints made before clipping (the timeline) existed
        if name not in state["units"]:
            raise CheckpointError(f"the checkpoint lacks the run's {name!r} state")
        unit.load_state_dict(state["units"][name])
    if state["grads"] is not None:
        set_gradients(trainer.model, state["grads"])
    if getattr(trainer, "scaler", None) is not None and state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.restore_time(float(state["active_seconds"]))
    trainer.restore_flags(state["flags"])
    set_rng_state(state["rng"], trainer.generator)


class ResumeFrom:
    """A run to go on from: the checkpoint's `state` and `path`, the newer files `skipped` (one line
    each), `lost_iterations` (run after the checkpoint, run again) and the changes asked for with
    `trainmon resume` (`batch_size`, `accum`: applied like pending changes)."""

    def __init__(self, state: dict, path: str, skipped: tuple[str, ...] = (), lost_iterations: int = 0,
                 batch_size: Optional[int] = None, accum: Optional[int] = None) -> None:
        self.state, self.path, self.skipped = state, path, tuple(skipped)
        self.lost_iterations, self.batch_size, self.accum = lost_iterations, batch_size, accum
