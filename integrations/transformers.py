"""A Hugging Face `Trainer`, watched and steered like a trainmon run: `TrainmonCallback`.

    from trainmon.integrations.transformers import TrainmonCallback
    trainer = Trainer(model, args, train_dataset=train, callbacks=[TrainmonCallback()])
    trainer.train()

Counts are the Trainer's own: an optimizer step per `on_step_end` (so the run's global step is
`state.global_step`), a micro-batch per `on_substep_end` / `on_step_end`, epochs as the Trainer loops
them, `gradient_accumulation_steps` as `k`, `max_steps` as the planned cut. Only the main process
(`state.is_world_process_zero`) records. Needs the extra `trainmon[transformers]`; importing
`trainmon` never imports transformers.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Iterable, Optional

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'trainmon.integrations.transformers needs Hugging Face transformers: pip install "trainmon[transformers]"'
    ) from exc

from trainmon.engine.core.alert_choices import loop_alert_settings
from trainmon.engine.core.throughput import ThroughputMeter
from trainmon.engine.run.device_name import gpu_name
from trainmon.engine.run.script_hooks import ScriptHooks
from trainmon.engine.run.tracker import Tracker
from trainmon.integrations.raw_loss import RawLosses

BATCH_SIZE_FIXED = ("the Hugging Face Trainer builds its data loader once, when train() starts: "
                    "per_device_train_batch_size cannot change during a run")
ACCUM_FIXED = ("the Hugging Face Trainer fetches each accumulation window's batches ahead: "
               "gradient_accumulation_steps cannot change during a run")
# Trainer metrics that describe the evaluation's speed, not the model: left out of the validation figures
_EVAL_BOOKKEEPING = {"runtime", "samples_per_second", "steps_per_second", "epoch"}
# keyword inputs whose first dimension is the batch's sample count, most telling first
_BATCH_KEYS = ("input_ids", "inputs_embeds", "pixel_values", "input_values", "input_features", "labels")


class TrainmonCallback(TrainerCallback):
    """Records a `transformers.Trainer` run into a trainmon run directory and control socket, live.

    `name`: what `trainmon ls` and the TUI call the run (default: the script's file name); `run_dir`:
    where to record (default: a new run folder, or the one `trainmon exec` made); `telemetry`: sample
    device memory about once a second; `alerts`, `on_alert`, `alerts_off`, `stall_after`: as `trainmon.track()`
    takes them. `tracker` is the `engine.tracking.Tracker` once training began.
    `unit="tokens"`: a `(B, T)` input (`input_ids`) counts B·T tokens, shown as tokens/s beside samples/s;
    `flops_per_token` / `flops_per_sample` (training FLOPs) give MFU at the Trainer's `bf16`/`fp16` flags
    (engine/core/throughput.py). Raises `ValueError` (one line) for a bad unit or figure.

    Micro-batches: one per `on_substep_end` (inside a window) and one per `on_step_end` (the window's
    last), its samples read from the first dimension of the model's input (`input_ids`, ...; a
    forward pre-hook, no sync), else from the data loader's arithmetic. Losses: the `loss` the Trainer
    logs (`on_log`, the mean over `logging_steps` optimizer steps, never divided by `k`); a NaN or Inf
    that its `logging_nan_inf_filter` hides is read from the model's own `loss` output (`RawLosses`: a
    forward hook, read at publication), counted at its iteration and alerted on. Validation:
    `on_evaluate`'s `eval_loss` and other `eval_*` metrics. Pause waits at the safe point before the
    next micro-batch (`on_step_begin`, `on_substep_end`); a stop sets `control.should_training_stop`,
    which the Trainer honours after the micro-batch in progress.
    """

    def __init__(self, name: Optional[str] = None, run_dir: Optional[str] = None, telemetry: bool = True,
                 alerts: bool = True, on_alert: Optional[str] = None, alerts_off: Iterable[str] = (),
                 stall_after: Optional[float] = None, unit: str = "samples", flops_per_sample: Optional[float] = None,
                 flops_per_token: Optional[float] = None) -> None:
        self.name, self.run_dir, self.telemetry = name, run_dir, telemetry
        self.alerts = loop_alert_settings("TrainmonCallback", alerts, on_alert, alerts_off, stall_after)
        # the job's units (engine/core/throughput.py): "tokens" counts a (B, T) input's B·T; FLOPs give MFU
        self._units = (unit, flops_per_sample, flops_per_token)
        ThroughputMeter().configure(*self._units)  # a bad unit or figure: a one-line ValueError now, not at train()
        self._batch_tokens = 0
        self.tracker: Optional[Tracker] = None
        self._batch_samples: Optional[int] = None  # the first dimension of the last training forward's input
        self._hook: Any = None
        self._steps_in_epoch: Optional[int] = None
        self._dataset_size: Optional[int] = None
        self._batch_size = 1
        self._logged_samples = 0  # samples since the last loss the Trainer logged
        self._last_logged_step = 0
        self._epoch_end_waits: Optional[str] = None  # "log" / "evaluate": the epoch ends once it arrives
        self._hooks: Optional[ScriptHooks] = None
        self._raw: Optional[RawLosses] = None  # the model's own loss outputs: a NaN the Trainer's log would hide

    # ---- start and end ------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       train_dataloader: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or (self.tracker is not None and self.tracker.result is None):
            return
        self._logged_samples, self._last_logged_step, self._epoch_end_waits = 0, state.global_step, None
        steps_in_epoch = _length(train_dataloader)
        dataset_size = _length(getattr(train_dataloader, "dataset", None))
        if dataset_size is not None and args.world_size > 1:
            dataset_size = None  # a rank's share is not the dataset: plan by the loader's length
        batch_size = getattr(state, "train_batch_size", None) or args.per_device_train_batch_size
        epochs = int(state.num_train_epochs) if steps_in_epoch is not None else None  # else sys.maxsize
        script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        tracker = Tracker(
            self.name or script or "transformers", epochs=epochs, batch_size=int(batch_size),
            accum=int(args.gradient_accumulation_steps), dataset_size=dataset_size,
            drop_last=bool(args.dataloader_drop_last), max_steps=int(state.max_steps) if state.max_steps > 0 else None,
            run_dir=self.run_dir, telemetry=self.telemetry, device=str(args.device), alerts=self.alerts,
            settings={"framework": "transformers", "options": {
                "epochs": args.num_train_epochs, "max_steps": args.max_steps, "batch_size": int(batch_size),
                "accum": args.gradient_accumulation_steps, "learning_rate": args.learning_rate,
                "logging_steps": args.logging_steps}},
        )
        if optimizer is not None and hasattr(optimizer, "param_groups"):
            tracker.watch_optimizer(optimizer, count_steps=False)  # the rate shown; steps come from on_step_end
        tracker.offer_batch_size(BATCH_SIZE_FIXED)
        tracker.offer_accum(ACCUM_FIXED)
        self._steps_in_epoch, self._dataset_size, self._batch_size = steps_in_epoch, dataset_size, int(batch_size)
        if model is not None and hasattr(model, "register_forward_pre_hook"):
            self._hook = model.register_forward_pre_hook(self._see_inputs, with_kwargs=True)
        self._raw = RawLosses(lambda: tracker.progress.global_iteration + 1).hook(model).attach(tracker.core)
        tracker.core.throughput.configure(*self._units, device_name=gpu_name(args.device),  # MFU's peak: the GPU's
                                          precision="bf16" if args.bf16 else "fp16" if args.fp16 else "fp32")  # ... and flags
        self.tracker = tracker.start()
        # the interpreter's end without on_train_end (an uncaught exception: failed), and a first SIGTERM: a stop
        self._hooks = ScriptHooks(self._finish, self.tracker.channel.request_stop).install()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._finish(None)

    # ---- epochs -------------------------------------------------------------------------------
    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        t = self.tracker
        if t is None:
            return
        self._end_epoch()
        # state.epoch is `epoch + (step + 1) / steps_in_epoch` after each step: a whole number here
        t.begin_epoch(int(math.floor(state.epoch + 1e-6)) + 1, iterations=self._steps_in_epoch,
                      samples=self._dataset_size)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.tracker is None:
            return
        # The Trainer logs and evaluates right after on_epoch_end (DefaultFlowCallback, called before us,
        # has set the flags): the epoch's line waits for them so it carries their figures. A log is asked
        # for here whenever steps ran since the last one, so no log window spans two epochs (the loss the
        # Trainer logs is the mean since its last log: the epoch's training loss must be its own).
        if state.global_step > self._last_logged_step:
            control.should_log = True
        if control.should_evaluate:
            self._epoch_end_waits = "evaluate"
        elif control.should_log and state.global_step > self._last_logged_step:
            self._epoch_end_waits = "log"
        else:
            self._end_epoch(force=True)

    # ---- micro-batches and steps --------------------------------------------------------------
    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._safe_point(control)

    def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.tracker is None:
            return
        self._micro_batch_done()
        self._safe_point(control)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        t = self.tracker
        if t is None:
            return
        self._micro_batch_done()
        t.step_done()
        # Logging, evaluation and saving come before the next on_step_begin: a stop asked for during this
        # micro-batch ends the run now, not after one more micro-batch (no pause here: step-once needs one
        # safe point per micro-batch).
        t.apply_commands()
        if t.stop_requested:
            control.should_training_stop = True

    # ---- figures ------------------------------------------------------------------------------
    def on_log(self, args: Any, state: Any, control: Any, logs: Optional[dict] = None, **kwargs: Any) -> None:
        t = self.tracker
        if t is None or not logs or "loss" not in logs:
            return
        # The Trainer's `loss`: the mean over the optimizer steps since its last log of each window's
        # loss (already read by the Trainer: no sync of ours). Weighted by the samples it covers. Unless the
        # model returned a NaN or Inf since the last log: then it is the filter's stand-in, left out (the
        # non-finite losses themselves are recorded, at their own iterations).
        if not self._raw_nonfinite():
            t.log_loss(float(logs["loss"]), weight=float(self._logged_samples or 1))  # closes the stepped window
        self._logged_samples = 0
        self._last_logged_step = state.global_step
        if self._epoch_end_waits == "log":
            self._end_epoch(force=True)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Optional[dict] = None,
                    **kwargs: Any) -> None:
        t = self.tracker
        if t is None:
            return
        metrics = dict(metrics or {})
        loss = metrics.pop("eval_loss", None)
        figures = {}
        for key, value in metrics.items():
            name = key[len("eval_"):] if key.startswith("eval_") else key
            if name not in _EVAL_BOOKKEEPING and isinstance(value, (int, float)) and not isinstance(value, bool):
                figures[name] = value
        t.validation(None if loss is None else float(loss), figures)
        if self._epoch_end_waits == "evaluate":
            self._end_epoch(force=True)

    # ---- inside -------------------------------------------------------------------------------
    def _safe_point(self, control: Any) -> None:
        t = self.tracker
        if t is not None and not t.safe_point():
            control.should_training_stop = True

    def _see_inputs(self, module: Any, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook: the training batch's sample count, from its input's first dimension."""
        if not module.training:
            return
        for key in _BATCH_KEYS:
            shape = getattr(kwargs.get(key), "shape", None)
            if shape:
                self._batch_samples = int(shape[0])
                self._batch_tokens = int(shape[0]) * int(shape[1]) if len(shape) == 2 else 0  # (B, T) token ids
                return
        for value in (*args, *kwargs.values()):
            shape = getattr(value, "shape", None)
            if shape:
                self._batch_samples = int(shape[0])
                return

    def _micro_batch_done(self) -> None:
        t = self.tracker
        assert t is not None
        samples, self._batch_samples = self._batch_samples, None
        if samples is None:
            samples = self._planned_samples()
        self._logged_samples += samples
        if self._batch_tokens:
            t.core.throughput.add(self._batch_tokens, samples)
            self._batch_tokens = 0
        t.iteration_done(samples)

    def _planned_samples(self) -> int:
        """The next micro-batch's samples by the data loader's arithmetic (inputs without a tensor)."""
        from trainmon.engine.core.arithmetic import batch_size_at

        t = self.tracker
        assert t is not None
        return batch_size_at(t.progress.iteration_in_epoch, self._dataset_size, self._batch_size, t.drop_last)

    def _raw_nonfinite(self) -> bool:
        """Read the model's loss outputs kept since the last publication (the Trainer has just read its own
        loss: no extra stall); whether one since the last call was NaN or Inf."""
        if self._raw is None or self.tracker is None:
            return False
        self._raw.feed(self.tracker.core.losses)
        return self._raw.take_span()

    def _end_epoch(self, force: bool = False) -> None:
        if self.tracker is not None and (force or self._epoch_end_waits):
            self._epoch_end_waits = None
            if self._raw is not None:
                self._raw.feed(self.tracker.core.losses)  # the epoch's NaNs count in its own line
            self.tracker.end_epoch()

    def _finish(self, error: Optional[BaseException]) -> None:
        t = self.tracker
        if t is None or t.result is not None:
            return
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._raw is not None:
            self._raw.remove()
        self._epoch_end_waits = None
        if isinstance(error, KeyboardInterrupt):
            t.finish(stopped=True)
        else:
            t.finish(error=error)
        if self._hooks is not None:
            self._hooks.uninstall()
            self._hooks = None


def _length(obj: Any) -> Optional[int]:
    """`len(obj)`, `None` for an object without a length (an IterableDataset, no loader)."""
    try:
        return len(obj) if obj is not None else None
    except TypeError:
        return None
