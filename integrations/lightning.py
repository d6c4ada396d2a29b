"""PyTorch Lightning's training recorded as a trainmon run, by adding one callback.

    from trainmon.integrations.lightning import TrainmonCallback
    trainer = L.Trainer(max_epochs=20, accumulate_grad_batches=4, callbacks=[TrainmonCallback()])

Lightning's own counters are the truth: an epoch is `trainer.current_epoch + 1`, its planned batches
`trainer.num_training_batches`, and optimizer steps are counted from `trainer.global_step` (so the short
window Lightning steps at an epoch's end and a `max_steps` cut-off show as Lightning counts them). The loss
shown is the true per-batch mean: Lightning hands callbacks `loss / accumulate_grad_batches`, which is
multiplied back here. Pause and single steps wait at batch starts; a stop sets `trainer.should_stop`.
Only global rank 0 records. Needs the extra `trainmon[lightning]`; `import trainmon` never imports it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Optional

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.utilities.parsing import lightning_hasattr, lightning_setattr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(f'trainmon.integrations.lightning needs PyTorch Lightning ({exc}): '
                      f'pip install "trainmon[lightning]"') from None

from trainmon.engine.core.alert_choices import loop_alert_settings
from trainmon.engine.core.throughput import ThroughputMeter
from trainmon.engine.run.device_name import gpu_name
from trainmon.engine.run.tracker import Tracker

__all__ = ["TrainmonCallback"]

ACCUM_OFF = ("Lightning counts accumulation windows from each epoch's first batch (batch_idx % k): a new "
             "accumulate_grad_batches mid-epoch would cut a window short (use GradientAccumulationScheduler)")
NO_BATCH_SIZE = ("neither the LightningModule nor its data module has a batch_size attribute to rebuild "
                 "the loader from")
NO_RELOAD = ("the loaders are not rebuilt each epoch: pass Trainer(reload_dataloaders_every_n_epochs=1) "
             "and build them from self.batch_size")
VAL_LOSS_KEYS = ("val_loss", "val/loss", "valid_loss", "validation_loss", "val_loss_epoch")


def batch_size_reason(trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> Optional[str]:
    """`None` when a new batch size can apply at the next epoch start (a `batch_size` attribute on the
    module, its hparams or its data module, and loaders rebuilt every epoch); else why it cannot."""
    if not lightning_hasattr(pl_module, "batch_size"):
        return NO_BATCH_SIZE
    if trainer.reload_dataloaders_every_n_epochs != 1:
        return NO_RELOAD
    return None


def loader_plan(trainer: "pl.Trainer") -> tuple[Optional[int], Optional[int], Optional[int], bool]:
    """This epoch's training loader as `(iterations, batch_size, samples, drop_last)`, each `None` where
    Lightning does not know it: iterations from `trainer.num_training_batches` (`inf` for a loader without
    a length), samples only when the epoch walks the whole dataset on this one process."""
    n = trainer.num_training_batches
    iterations = int(n) if n != float("inf") else None
    loader = trainer.train_dataloader
    b = getattr(loader, "batch_size", None)
    batch_size = b if isinstance(b, int) and not isinstance(b, bool) else None
    drop_last = bool(getattr(loader, "drop_last", False))
    samples = None
    try:
        length, dataset = len(loader), loader.dataset
        whole = iterations == length and type(getattr(loader, "sampler", None)).__name__ != "DistributedSampler"
        samples = len(dataset) if whole else None
    except (TypeError, AttributeError):
        samples = None
    return iterations, batch_size, samples, drop_last


def true_loss(outputs: Any, automatic: bool, accum: int) -> Any:
    """The batch's mean loss from `on_train_batch_end`'s `outputs` (a 0-d tensor, `None` when the step
    returned none). Under automatic optimization Lightning divides the loss by `accumulate_grad_batches`
    before handing it over (even in an epoch's short last window); trainmon shows it undivided."""
    import torch

    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        return None
    loss = loss.detach()
    return loss * accum if automatic and accum != 1 else loss  # no sync: read at the next publication


def validation_figures(metrics: Mapping) -> tuple[Optional[float], dict[str, float]]:
    """`(val loss, other validation metrics)` from `trainer.callback_metrics`: the keys logged with a
    `val` prefix (`val_loss`, `val/acc`, `valid_f1`), named without it. Reads each tensor (a sync, once per validation)."""
    figures: dict[str, float] = {}
    for key, value in metrics.items():
        if str(key).lower().startswith("val"):
            try:
                figures[str(key)] = float(value)
            except (TypeError, ValueError, RuntimeError):
                continue
    loss = next((figures.pop(key) for key in VAL_LOSS_KEYS if key in figures), None)
    return loss, {short_name(key): value for key, value in figures.items()}


def short_name(key: str) -> str:
    """A validation metric's name without its `val` prefix (`val_acc` → `acc`): trainmon's validation lines
    and panes say `val_` themselves."""
    for prefix in ("validation_", "validation/", "valid_", "valid/", "val_", "val/"):
        if key.lower().startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix):]
    return key


def first_tensor_elements(batch: Any) -> int:
    """Elements of a batch's first tensor (a tensor, the first of a tuple or list, `input_ids` or the first of
    a dict): B·T for `(B, T)` token ids; 0 without a tensor. Shapes only: no sync."""
    if isinstance(batch, dict):
        batch = batch.get("input_ids", next(iter(batch.values()), None))
    elif isinstance(batch, (list, tuple)):
        batch = batch[0] if batch else None
    numel = getattr(batch, "numel", None)
    return int(numel()) if callable(numel) else 0


class TrainmonCallback(Callback):
    """Records `Trainer.fit` as a trainmon run (`trainmon attach`, `ls`, `logs`, `stop` work on it).

    `name`: the run's name (default: the script's file name); `run_dir`: where to record (default: a new
    run folder, or the one `trainmon exec` made); `telemetry`: sample device memory about once a second;
    `settings`: more to keep in run.json. `alerts`, `on_alert`, `alerts_off`, `stall_after`: as
    `trainmon.track()` takes them. Works beside Lightning's progress bar, or in its place with
    `Trainer(enable_progress_bar=False)`. A viewer's batch-size change applies at the next epoch start
    where `batch_size_reason` allows it; accumulation changes are refused (see `ACCUM_OFF`).
    `unit="tokens"`: `tokens(batch)` counts a batch's tokens (default: the elements of its first tensor, a
    `(B, T)` of token ids), shown as tokens/s; `flops_per_token` / `flops_per_sample` (training FLOPs) give
    MFU at the Trainer's precision (engine/core/throughput.py). Raises `ValueError` for a bad unit or figure.
    """

    def __init__(self, name: Optional[str] = None, run_dir: Optional[str] = None, telemetry: bool = True,
                 alerts: bool = True, on_alert: Optional[str] = None, alerts_off: Iterable[str] = (),
                 stall_after: Optional[float] = None, unit: str = "samples", flops_per_sample: Optional[float] = None,
                 flops_per_token: Optional[float] = None, tokens: Optional[Callable[[Any], int]] = None,
                 **settings: Any) -> None:
        super().__init__()
        self.name, self.run_dir, self.telemetry, self.settings = name, run_dir, telemetry, settings
        self.alerts = loop_alert_settings("TrainmonCallback", alerts, on_alert, alerts_off, stall_after)
        self._units = (unit, flops_per_sample, flops_per_token)
        ThroughputMeter().configure(*self._units)  # a bad unit or figure: a one-line ValueError now, not at fit()
        self._tokens = (tokens or first_tensor_elements) if unit == "tokens" else None
        self.tracker: Optional[Tracker] = None
        self._steps_before = 0
        self._accum = 1
        self._automatic = True
        self._batch_size_live = False
        self._stopping = False

    # ---- start and end ------------------------------------------------------------------------
    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._stopping = False
        if not trainer.is_global_zero:
            self.tracker = None
            return
        iterations, batch_size, samples, drop_last = loader_plan(trainer)
        k = int(trainer.accumulate_grad_batches)
        max_steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        options = {"max_epochs": epochs, "max_steps": max_steps, "accumulate_grad_batches": k,
                   "batch_size": batch_size, "lightning": pl.__version__}
        tracker = Tracker(self.name or script or type(pl_module).__name__, epochs=epochs, batch_size=batch_size,
                          accum=k, dataset_size=samples, drop_last=drop_last, max_steps=max_steps,
                          run_dir=self.run_dir, telemetry=self.telemetry, device=str(pl_module.device),
                          settings={"framework": "lightning", "options": options, **self.settings},
                          alerts=self.alerts)
        if trainer.optimizers:  # the learning rate shown; the steps come from trainer.global_step
            tracker.watch_optimizer(trainer.optimizers[0], count_steps=False)
        reason = batch_size_reason(trainer, pl_module)
        self._batch_size_live = reason is None
        tracker.offer_batch_size(reason)
        tracker.offer_accum(ACCUM_OFF)
        resumed = tracker.progress
        resumed.global_step = trainer.global_step  # a fit resumed from a checkpoint goes on counting
        resumed.global_iteration = trainer.fit_loop.epoch_loop.batch_progress.total.completed
        tracker.core.throughput.configure(*self._units, device_name=gpu_name(pl_module.device),
                                          precision=str(trainer.precision))  # "bf16-mixed": MFU's peak
        self.tracker = tracker.start()

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        tracker = self._live()
        if tracker is not None:
            tracker.finish()

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        tracker = self._live()
        if tracker is None:
            return
        if isinstance(exception, KeyboardInterrupt) or type(exception).__name__ == "SIGTERMException":
            tracker.finish(stopped=True)  # Ctrl+C or a SIGTERM: stopped by the user, not failed
        else:
            tracker.finish(error=exception)

    # ---- epochs ---------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        tracker = self._live()
        if tracker is None:
            return
        iterations, batch_size, samples, drop_last = loader_plan(trainer)
        k = int(trainer.accumulate_grad_batches)
        tracker.set_loop_accum(k)  # GradientAccumulationScheduler: Lightning's own k, from this epoch
        tracker.drop_last = drop_last
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        tracker.begin_epoch(trainer.current_epoch + 1, iterations, batch_size, samples, epochs)

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        tracker = self._live()
        if tracker is None:
            return
        tracker.end_epoch()
        if self._batch_size_live:  # the next epoch's loader is built (setup_data) before its start hook
            lightning_setattr(pl_module, "batch_size", tracker.next_batch_size)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        tracker = self._live()
        if tracker is None or trainer.sanity_checking:
            return
        loss, metrics = validation_figures(trainer.callback_metrics)
        if loss is not None or metrics:
            tracker.validation(loss, metrics)

    # ---- batches --------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", batch: Any,
                             batch_idx: int) -> None:
        tracker = self._live()
        self._steps_before = trainer.global_step
        self._accum = int(trainer.accumulate_grad_batches)
        self._automatic = pl_module.automatic_optimization
        if tracker is None:
            return
        if not self._stopping and not tracker.safe_point():  # waits here while paused
            self._stop(trainer)
        # a callback cannot skip a fetched batch: after a stop asked for while paused, it still runs (and counts)
        tracker.iteration_started()  # steps taken during this batch count after it

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        tracker = self._live()
        stop = self._stopping
        if tracker is not None:
            for _ in range(trainer.global_step - self._steps_before):
                tracker.step_done()  # inside the batch: counted by iteration_done, before its publication
            samples = self._samples(batch, tracker)
            if self._tokens is not None:  # the job counts tokens: summed beside the samples (tokens/s)
                tracker.core.throughput.add(int(self._tokens(batch)), samples)
            tracker.iteration_done(samples, true_loss(outputs, self._automatic, self._accum))
            tracker.apply_commands()  # a stop asked for during this batch ends the run after it
            stop = stop or tracker.stop_requested
        if trainer.world_size > 1:  # every rank must stop together (a collective on a 1-element tensor)
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop and not self._stopping:
            self._stop(trainer)

    # ---- inside ---------------------------------------------------------------------------------
    def _live(self) -> Optional[Tracker]:
        """The tracker while its run is open (`None` on ranks other than 0, before `fit`, after its end)."""
        return self.tracker if self.tracker is not None and self.tracker.result is None else None

    def _stop(self, trainer: "pl.Trainer") -> None:
        self._stopping = True
        trainer.should_stop = True  # Lightning ends the epoch after this batch (and validates, as for early stopping)

    @staticmethod
    def _samples(batch: Any, tracker: Tracker) -> int:
        """Samples in `batch` by the engine's rule (`engine.batches.batch_samples`); the loader's batch size
        for a batch holding no tensor."""
        from trainmon.engine.jobs.batches import batch_samples

        try:
            return batch_samples(batch)
        except TypeError:
            return tracker.current_batch_size
