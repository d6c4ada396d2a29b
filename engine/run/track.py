"""`trainmon.track()`: a hand-written training loop, watched and steered like a trainmon run, by adding a few lines.

    import trainmon
    run = trainmon.track(optimizer, accum=4)
    for epoch in run.epochs(10):                 # was: range(10)
        for x, y in run.batches(loader):         # was: loader
            loss = loss_fn(model(x), y)
            (loss / 4).backward()
            if run.window_end:                   # or the loop's own (i + 1) % 4 == 0
                optimizer.step(); optimizer.zero_grad()
            run.log(loss)                        # a tensor: read later, never a sync here

No textual; torch only through the objects the loop hands over.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from time import perf_counter
from typing import Any, Callable, Iterable, Iterator, Optional

from trainmon.engine.run.device_name import gpu_name
from trainmon.engine.run.script_hooks import ScriptHooks
from trainmon.engine.run.session import RUN_DIR_ENV
from trainmon.engine.run.tracker import Tracker

LEFT_LOOP_GRACE = 0.5  # seconds between leaving the epochs loop and the run's end (see Run.epochs)


def batch_samples_of(batch: Any) -> int:
    """Samples in a batch, by the engine's rule (`engine.batches.batch_samples`): the first dimension of an
    `(inputs, targets)` pair's targets, else of the first tensor. Raises `TypeError` (naming `samples=`)
    for a batch with no tensor: pass `samples=` to `Run.batches` there, or where the count is tokens."""
    from trainmon.engine.jobs.batches import batch_samples

    try:
        return batch_samples(batch)
    except TypeError as exc:
        raise TypeError(f"trainmon: {exc}; pass run.batches(loader, samples=lambda batch: ...)") from None


class Run:
    """A tracked loop's handle (what `trainmon.track` returns). See the module docstring for the lines it takes.

    Counts iterations and samples from the batches `batches()` hands out, optimizer steps from the
    optimizer itself (a step post-hook), losses from `log()` (read at publication). Pause, single step and
    stop apply at the next batch: `batches()` waits while paused and ends when a viewer stops the run;
    `epochs()` then ends too. `batch_size` and `accum` are what the loop should use: reading them tells
    viewers the loop takes changes of them (else their keys are dimmed).
    """

    def __init__(self, tracker: Tracker, epochs: Optional[int] = None) -> None:
        self.tracker = tracker
        self._hot = tracker.hot
        self._tensor: Any = None  # the class of the 0-d tensors `log` got last (checked once, then by identity)
        self._divided_checked = False
        self._epochs = epochs
        self._closed = False
        self._hooks: Optional[ScriptHooks] = None
        self._in_epochs = False
        self._closing = threading.Lock()  # close() may come from a timer thread (the loop left) and the script

    # ---- what the loop reads -----------------------------------------------------------------
    @property
    def id(self) -> Optional[str]:
        """The run's id (`trainmon attach ID`), `None` when nothing is recorded (a rank other than 0)."""
        return self.tracker.run_id

    @property
    def should_stop(self) -> bool:
        """A viewer asked to stop: `batches()` ends at the next batch; a loop of its own should end too."""
        return self.tracker.stop_requested

    @property
    def batch_size(self) -> int:
        """The batch size (samples) to build this epoch's loader with; a viewer's change shows here from
        the next epoch's start. Reading it makes the batch-size keys live in viewers."""
        return self.tracker.batch_size

    @property
    def accum(self) -> int:
        """Accumulation steps `k` of the open window (a change applies at the next window start).
        Reading it makes the accumulation keys live in viewers."""
        return self.tracker.accum

    @property
    def window_end(self) -> bool:
        """True when the current micro-batch closes its accumulation window (its `k`-th, or the epoch's
        last): step the optimizer after it. Reading it makes the accumulation keys live."""
        return self.tracker.window_end

    def loader(self, dataset: Any, **kwargs: Any) -> Any:
        """A `torch.utils.data.DataLoader` over `dataset` at `batch_size` (the run's current one; build it
        at each epoch start to take a viewer's change); `kwargs` go to the DataLoader as they are."""
        from torch.utils.data import DataLoader

        if "batch_size" in kwargs:
            raise TypeError("run.loader sets batch_size itself (run.batch_size); pass the other DataLoader arguments")
        return DataLoader(dataset, batch_size=self.batch_size, **kwargs)

    # ---- what the loop hands over -----------------------------------------------------------
    def epochs(self, epochs: Optional[int] = None, start: int = 0) -> Iterator[int]:
        """Epoch indexes `start, ..., epochs - 1` like `range(start, epochs)` (0-based), each one announced
        to viewers; ends early when a viewer stops the run, and finishes the run after the last."""
        total = self._epochs if epochs is None else epochs
        if total is None or isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"run.epochs needs a whole number of epochs >= 0, not {total!r}")
        if self._closed:
            raise RuntimeError("trainmon: this run ended when its run.epochs() loop ended; use one run.epochs(N) "
                               "for the whole training, or trainmon.track() again for a new run")
        if self._in_epochs:
            raise RuntimeError("trainmon: run.epochs() is already looping; nest run.batches() in it, not run.epochs()")
        self._in_epochs = True
        self._epochs = total
        t = self.tracker
        t.plan_epochs(total)
        try:
            for index in range(start, total):
                if t.stop_requested:
                    break
                t.begin_epoch(index + 1)
                yield index
                self._complete_iteration()
                t.end_epoch()
                t.apply_commands()  # a stop asked for during the code after the batches (validation) ends here
                if t.stop_requested:
                    break
        except GeneratorExit:  # the loop was left: `break`/`return`, or an exception passing through it
            self._in_epochs = False
            # An exception unwinding the loop closes this generator just before sys.excepthook sees it, and
            # nothing here can tell it from a `break`: the run ends a moment later, as failed if the hook
            # saw an exception by then (the batch it raised in is not counted), else as finished (the batch
            # out with the loop counted, the epoch ended: a script that goes on after its loop).
            if self._closed or sys.is_finalizing():  # the exit's handler ended the run (the interpreter collects
                self.close()  # the generator), or no thread starts now (3.11 waits for it forever): end it here
                raise
            timer = threading.Timer(LEFT_LOOP_GRACE, self.close)
            timer.daemon = True
            timer.start()
            raise
        self._in_epochs = False
        self.close()

    def batches(self, loader: Iterable, samples: Optional[Callable[[Any], int]] = None) -> Iterator[Any]:
        """The batches of `loader` (a DataLoader or any iterable), each one counted as an iteration once the
        loop asks for the next; `samples(batch)` counts a batch's samples (default: the first dimension of
        its first tensor). Waits here while paused; ends when a viewer stops the run."""
        t = self.tracker
        own_epoch = not t.epoch_open  # a loop without run.epochs(): each pass over a loader is an epoch
        if own_epoch:
            t.begin_epoch()
        length = None
        try:
            length = len(loader)
        except TypeError:
            length = None
        dataset = getattr(loader, "dataset", None)
        try:
            size = len(dataset) if dataset is not None else None
        except TypeError:
            size = None
        batch_size = getattr(loader, "batch_size", None)
        if getattr(loader, "sampler", None) is not None and type(loader.sampler).__name__ == "DistributedSampler":
            size = None  # a rank's share: the epoch's plan is the loader's length
        t.drop_last = bool(getattr(loader, "drop_last", t.drop_last))
        t.describe_loader(length, batch_size if isinstance(batch_size, int) else None, size)
        self._complete_iteration()  # a batch a slow-path caller left out (nothing in a hot loop)
        exact = (batch_size, size) if (samples is None and isinstance(batch_size, int) and size is not None
                                       and batch_size > 0) else None
        count = samples or batch_samples_of
        iterator = iter(loader)
        hot = t.hot_begin(exact)
        counts = hot.samples  # None when the loader's arithmetic gives every batch's samples
        completed = False
        clock = perf_counter
        wait = 0.0  # seconds waited for batches, handed to `hot.wait` before each fold
        try:
            if hot.check and not t.hot_point():
                return
            hot.asked = asked = clock()
            for batch in iterator:
                # the hot path: the batch, one integer add, one flag test (DESIGN.md: ≤ 1 µs an iteration),
                # and two clock reads around the batch: the time spent waiting for it (`data_wait=`)
                hot.handed = handed = clock()
                wait += handed - asked
                if counts is not None:
                    counts.append(int(count(batch)))
                completed = True  # the batch is out with the loop: a `break` from here counts it
                yield batch
                completed = False
                hot.n += 1  # the loop asked for the next batch: this iteration is done
                if hot.check:
                    hot.wait += wait
                    wait = 0.0
                    if not t.hot_point():
                        return
                hot.asked = asked = clock()
            hot.wait += wait
            wait = 0.0
            t.loader_ran_out()
            if own_epoch:
                t.hot_end(False)
                t.end_epoch()
        finally:
            hot.wait += wait
            if not completed:
                t.hot_end(False)
            # else the loop left with a batch out: `break` (it counts when the loop goes on, or the run ends
            # without an error) or an exception (it never completed: the run fails without counting it)

    def log(self, loss: Any, weight: Optional[float] = None) -> None:
        """The current micro-batch's mean loss: a 0-d tensor (kept, read at the next publication: no sync
        here) or a number. `weight` its share in the means (default its samples; tokens, say). Raises
        `TypeError`/`ValueError` (one line, `trainmon:`) for anything else: at once, or for a tensor of the
        kind already seen that holds several numbers, when the span is read (the next publication, within
        half a second), naming its global iteration."""
        if type(loss) is not self._tensor:  # a tensor of the kind seen passes at once (its shape: at the read)
            loss = self._checked_loss(loss)
        hot = self._hot
        losses = hot.losses
        if len(losses) == hot.n and weight is None:  # the common case: one log an iteration
            losses.append(loss)
        else:
            hot.log(loss, weight)

    def _checked_loss(self, loss: Any) -> Any:
        shape = getattr(loss, "shape", None)
        if shape is not None:
            if len(shape):
                if loss.numel() != 1:
                    raise ValueError(f"trainmon: run.log takes the batch's mean loss, one number, not a tensor of "
                                     f"shape {tuple(shape)}")
                return loss.reshape(())
            self._tensor = type(loss)
            self._check_divided(loss)
            return loss
        if loss is None:
            raise TypeError("trainmon: run.log takes a 0-d tensor or a number, not None")
        try:
            value = float(loss)
        except (TypeError, ValueError):
            raise TypeError(f"trainmon: run.log takes a 0-d tensor or a number, not {type(loss).__name__} "
                            f"{loss!r:.40}") from None
        self._hot.floats = True
        return value

    def _check_divided(self, loss: Any) -> None:
        """Warn once when the first logged loss is a scaled one (`loss / k`, `loss * (1/k)`), read off its
        autograd node: the loss shown would be k times too small. Where backward has not freed the factor
        yet, only when it is the accumulation steps; after backward, the node's kind alone. One attribute
        read, once per run; a CPU scalar factor only (a Python number is one): never a device sync."""
        if self._divided_checked:
            return
        self._divided_checked = True
        k = self.tracker.core.window.accum
        node = getattr(loss, "grad_fn", None)
        kind = type(node).__name__
        if k < 2 or kind not in ("DivBackward0", "MulBackward0"):
            return
        try:
            other = node._saved_other  # the divisor; freed once backward ran through the node
        except RuntimeError:
            other = None
        if other is not None and other.numel() == 1 and other.device.type == "cpu":
            value = float(other)
            if not ((kind == "DivBackward0" and value == k) or (kind == "MulBackward0" and abs(value * k - 1) < 1e-9)):
                return  # scaled by something else: the loop's own business
            said = f"run.log got the loss divided by the accumulation steps ({k})"
        else:  # backward already freed the factor: the node says a scaled loss came, not by how much
            said = f"run.log got a scaled loss ({kind}): if it is the loss divided by the accumulation steps ({k})"
        self.tracker.warn(f"{said}: log the undivided loss (backward may take loss / {k}); the loss shown would "
                          f"be {k}× too small", stderr=True)

    def validation(self, loss: Optional[float] = None, **metrics: float) -> None:
        """This epoch's validation results: mean `loss`, and metrics by name (`accuracy=0.93`)."""
        self.tracker.validation(loss, metrics)

    def close(self, error: Optional[BaseException] = None, stopped: Optional[bool] = None,
              count_batch_out: bool = True) -> None:
        """End the run (finished, or stopped when a viewer stopped it; failed with `error`). Called by
        `epochs()` after the last epoch, by `with`, and at interpreter exit. `count_batch_out=False`: a
        batch still out with the loop did not complete (Ctrl+C inside it) and is not counted."""
        with self._closing:  # held throughout: an exit waits for an end the timer thread is writing
            if self._closed:
                return
            self._closed = True
            hot = self._hot
            stepped_inside = hot.active and bool(hot.steps) and hot.steps[-1] > hot.n
            signalled = self._hooks.signalled if self._hooks is not None else None
            if signalled is not None and error is None:
                self.tracker.warn(f"stopped by {signal.Signals(signalled).name}: " + (
                    "the terminal closed (nohup or trainmon exec keep a run beyond its terminal)"
                    if signalled == getattr(signal, "SIGHUP", None) else "a kill or a scheduler asked for it"))
            if (error is None and count_batch_out) or stepped_inside:
                # a batch out with a loop left by `break` was done; so was one that stepped the optimizer
                # before the exception (its step counts, and the iteration it closed)
                self._complete_iteration()
            self.tracker.finish(error=error, stopped=stopped)
            if self._hooks is not None:
                self._hooks.uninstall()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        self._end(error)

    # ---- inside ----------------------------------------------------------------------------
    def _complete_iteration(self) -> None:
        """The micro-batch handed out last is done (the loop asked for the next, or left the loop)."""
        t = self.tracker
        t.hot_end(True)

    def _install(self) -> "Run":
        """End the run with the script (at exit, on an uncaught exception) and stop it on a first SIGTERM."""
        self._hooks = ScriptHooks(self._end, self.tracker.channel.request_stop).install()
        return self

    def _end(self, error: Optional[BaseException]) -> None:
        if isinstance(error, KeyboardInterrupt):  # Ctrl+C: the user stopped it, inside an unfinished batch
            self.close(stopped=True, count_batch_out=False)
        else:
            self.close(error)


def track(optimizer: Any = None, *, epochs: Optional[int] = None, accum: int = 1, batch_size: Optional[int] = None,
          name: Optional[str] = None, max_steps: Optional[int] = None, run_dir: Optional[str] = None,
          device: Optional[str] = None, quiet: bool = False, alerts: bool = True, on_alert: Optional[str] = None,
          alerts_off: Iterable[str] = (), stall_after: Optional[float] = None, unit: str = "samples",
          flops_per_sample: Optional[float] = None, flops_per_token: Optional[float] = None,
          precision: str = "fp32", **settings: Any) -> Run:
    """Start recording the calling script's training loop as a trainmon run; returns its `Run`.

    `optimizer`: a `torch.optim.Optimizer` whose steps are counted (a step post-hook) and whose learning
    rate is shown; `None`: count steps by `run.tracker.step_done()`. `epochs`: planned epochs (or give them
    to `run.epochs(N)`); `accum`: the loop's accumulation steps `k`; `batch_size`: the loader's (learnt
    from the loader otherwise); `name`: the run's name (default: the script's file name); `max_steps`:
    the run ends after that many optimizer steps; `run_dir`: where to record (default: a new run folder,
    or the one `trainmon exec` made); `settings`: more to keep in run.json (numbers, strings).

    Throughput in the job's units (engine/core/throughput.py): `unit="tokens"` says the weights the loop
    gives `run.log(loss, weight=...)` are its tokens (tokens/s is then shown beside samples/s);
    `flops_per_sample` / `flops_per_token` (training FLOPs, forward and backward) give MFU against the
    device's peak at `precision` (`fp32`, `bf16`, `fp16`: what the loop trains in).

    Unless `quiet` (or `TRAINMON_QUIET=1`), one line on stderr says the run's id and how to watch it.

    Alerts (README "Alerts"): `alerts=False` raises none; `alerts_off`: kinds turned off (`("loss_spike",)`);
    `stall_after`: seconds without an iteration before `stall`; `on_alert`: a shell command run once per
    alert and at the run's end, the alert as one JSON object on its stdin. These win over `trainmon exec`'s
    options (`$TRAINMON_ALERTS`): `alerts=True` and `on_alert=None` leave theirs, `alerts_off` adds to theirs.

    Raises `ValueError` for a bad number and `TypeError` for an optimizer that is none. On a process
    other than rank 0 of a `torchrun` job nothing is recorded and the run's keys work locally only.
    """
    from trainmon.engine.core.alert_choices import loop_alert_settings

    alert_settings = loop_alert_settings("trainmon.track", alerts, on_alert, alerts_off, stall_after)
    rank = int(os.environ.get("RANK", "0") or 0)
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    tracker = Tracker(name or script or "own loop", epochs=epochs, batch_size=batch_size, accum=accum,
                      max_steps=max_steps, run_dir=run_dir, session=rank == 0, telemetry=rank == 0,
                      settings={"options": {"epochs": epochs, "accum": accum, "batch_size": batch_size,
                                            "max_steps": max_steps}, **settings},
                      device=device or _device_of(optimizer), alerts=alert_settings)
    if optimizer is not None:
        tracker.watch_optimizer(optimizer)
    tracker.core.throughput.configure(unit, flops_per_sample, flops_per_token, gpu_name(tracker.device), precision)
    tracker.config.precision = tracker.core.throughput.precision or "fp32"
    tracker.start()
    if tracker.run_id and not quiet and os.environ.get("TRAINMON_QUIET", "") in ("", "0") \
            and not os.environ.get(RUN_DIR_ENV):  # under `trainmon exec`, exec says it
        print(f"trainmon: recording run {tracker.run_id} — watch it: trainmon attach {tracker.run_id}"
              f" (stop: trainmon stop {tracker.run_id})", file=sys.stderr, flush=True)
    return Run(tracker, epochs)._install()


def _device_of(optimizer: Any) -> str:
    """The device of the optimizer's first parameter (`cpu`, `cuda:0`), `cpu` without one."""
    for group in getattr(optimizer, "param_groups", None) or []:
        for parameter in group.get("params", []):
            return str(getattr(parameter, "device", "cpu"))
    return "cpu"
