"""The Trainer's iterations: the safe point before each (commands, pause, saves), set-up and loaders,
forward and backward with exact accumulation weights, the optimizer step once per window, and going back
to a smaller batch size after running out of memory.

A part of `run.trainer.Trainer` kept apart (as `trainer_checkpoints` is): it reads and sets the Trainer's
units; the loop order stays in trainer.py.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Optional

import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from trainmon.engine.core import messages as msg
from trainmon.engine.jobs.batches import batch_samples, call_model, move_to
from trainmon.engine.jobs.job import resolve_device
from trainmon.engine.jobs.loader import JobError
from trainmon.engine.jobs.preflight import check_first_batch, loss_shape_error
from trainmon.engine.run.device_name import gpu_name

REDO = object()  # `_run_epoch`'s answer when the epoch must run again (out of memory after an increase)


class TrainerIteration:
    """Mixed into `run.trainer.Trainer`; uses its job, config, core units, channel and `_publish`."""

    def _setup(self) -> None:
        if self.worker_log is not None:
            try:
                self._worker_log_start = os.path.getsize(self.worker_log)
            except OSError:
                self._worker_log_start = 0
        torch.manual_seed(self.config.seed)
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self.device = resolve_device(self.config.device) if self._dist is None else self._dist.device
        self.model = self.job.model.to(self.device)
        self._forward = self.model if self._dist is None else self._dist.wrap(self.model)  # DDP on a rank
        self.optimizer = self.job.optimizer(self.model.parameters(), self.config.lr)
        self.scheduler = self.job.lr_scheduler(self.optimizer) if self.job.lr_scheduler else None
        precision = self.config.precision
        self._amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        # fp16 keeps small gradients from underflowing with a scale; it skips a step whose gradients overflowed
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None
        self.core.throughput.configure(self.job.count_unit, self.job.flops_per_sample, self.job.flops_per_token,
                                       gpu_name(self.device))  # the job's units: tokens/s, MFU
        self._publish(force=True)

    def _make_loader(self, dataset: Any, batch_size: int, shuffle: bool, drop_last: bool,
                     stateful: bool = False, epoch: Optional[int] = None) -> DataLoader:
        """A loader over `dataset`; `stateful`: torchdata's `StatefulDataLoader`, whose `state_dict()` is the
        position inside the epoch (sampler order, batches yielded, workers' states) for a checkpoint.
        On a rank, the training loader (0-based `epoch` given) draws from its `DistributedSampler`."""
        iterable = isinstance(dataset, torch.utils.data.IterableDataset)
        sampler = None
        if self._dist is not None and epoch is not None:
            sampler = self._dist.sampler(dataset, shuffle, self.config.seed, drop_last, epoch)
        return (StatefulDataLoader if stateful else DataLoader)(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and not iterable and sampler is None,
            sampler=sampler,
            drop_last=drop_last,
            collate_fn=self.job.collate_fn,
            num_workers=self.config.num_workers,
            generator=None if iterable else self._generator,
            pin_memory=self.device.type == "cuda",
        )

    def _out_of_memory(self, t: int, exc: BaseException) -> object:
        """An iteration ran out of device memory. After a batch-size increase: free what can be freed,
        drop the open window's partial gradients (no step from half a window), go back to the last
        batch size that worked and run epoch `t` again from its start (`REDO`). With nothing to go back
        to: raise `JobError` naming the batch size and the memory figures (the run fails in one line)."""
        p, b = self.progress, self._batch_sizes.batch_size
        good = self._last_good_batch_size
        where = f"iteration {p.iteration_in_epoch + 1} of epoch {p.epoch}"
        self.optimizer.zero_grad(set_to_none=True)
        self._flush_losses()
        import gc

        gc.collect()
        figures = ""
        if self.device.type == "cuda":
            figures = (f" (torch allocated {torch.cuda.memory_allocated(self.device) / 2**20:.0f} MiB, reserved "
                       f"{torch.cuda.memory_reserved(self.device) / 2**20:.0f} MiB)")
            torch.cuda.empty_cache()
        if good is None or good >= b:
            raise JobError(f"out of memory at batch size {b}, {where}{figures}: no smaller batch size has worked "
                           f"in this run to go back to; try a smaller --batch-size") from exc
        self._window.close()
        p.window_position = p.window_samples = 0
        self._batch_sizes.revert(good, b, t)
        self._changes += 1
        reverted = msg.BatchSizeReverted(b, good, p.epoch, p.iteration_in_epoch, p.global_iteration,
                                         f"batch size {b} ran out of memory at {where}{figures} — back to {good}")
        self.channel.emit(reverted)
        self._speed.reset_eta(p.global_iteration)
        self._loader, self._in_epoch = None, False
        return REDO

    def _open_window(self, i: int, n: Optional[int], b: int) -> None:
        """Start an accumulation window at 0-based iteration `i`: apply a pending accum, size the window."""
        self.core.apply_pending_accum()
        self._publish()  # forced when the accumulation steps changed
        self._window.open(i, n, self.dataset_size, b, self.config.drop_last, exact=self.job.batch_count is None)

    def _check_first(self, batch: Any, which: str) -> None:
        """The preflight's checks on the first batch of an `IterableDataset` (never drawn ahead)."""
        if which in self._unchecked:
            self._unchecked.discard(which)
            for warning in check_first_batch(self.job, batch, which):
                self._warn(warning)

    def _warn_short_epoch(self, epoch: int, n: Optional[int]) -> None:
        """An epoch whose loader yielded no batch, or fewer than planned, is a warning, never a silent
        success (a one-shot iterator gives nothing the second time). Once per run."""
        ran, before = self.progress.iteration_in_epoch, self._totals.iterations_done
        if self._short_epoch_warned or (n is None and ran) or (n is not None and ran >= n):
            return
        self._short_epoch_warned = True
        planned = f"of the {n} planned" if n is not None else f"(the epochs before ran {before})"
        self._warn(f"epoch {epoch} ran {ran} iterations {planned}: the training data ran out; an "
                   f"IterableDataset must return a new iterator from each __iter__ call (not warned again)")

    def _train_iteration(self, batch: Any) -> None:
        batch = move_to(batch, self.device)
        if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
            raise TypeError(
                f"each batch must be an (inputs, targets) pair; the loader gave a {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (list, tuple)) else "")
            )
        self._check_first(batch, "training")
        inputs, targets = batch
        samples = batch_samples(batch)
        weight = float(self.job.batch_count(batch)) if self.job.batch_count else float(samples)
        # on a rank, DDP all-reduces the gradients on the window's last micro-batch only (no_sync before)
        with (contextlib.nullcontext() if self._dist is None else
              self._dist.grad_sync(self._forward, self.progress.window_position + 1 >= self._window.size)):
            loss = self._forward_backward(inputs, targets, weight)
        self._losses.record(loss.detach(), self.progress.global_iteration + 1, weight)  # no per-iteration sync
        self._window.weight += weight
        if self.job.batch_count:  # the job's own count (tokens): tokens/s is the samples rate times its share
            self.core.throughput.add(weight, samples)
        self.progress.record_iteration(samples)

    def _forward_backward(self, inputs: Any, targets: Any, weight: float) -> torch.Tensor:
        """One micro-batch's forward and backward (its loss weighted by `weight`); its batch-mean loss, `()`."""
        with (torch.autocast(self.device.type, dtype=self._amp_dtype) if self._amp_dtype is not None
              else contextlib.nullcontext()):  # a disabled autocast still costs ~10 µs an iteration
            outputs = call_model(self._forward, inputs)
            loss = self.job.loss_fn(outputs, targets)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:  # shape only: no sync
            p = self.progress
            raise JobError(loss_shape_error(self.job, outputs, targets, loss,
                                            f"iteration {p.iteration_in_epoch + 1} of epoch {p.epoch} "
                                            f"(global iteration {p.global_iteration + 1})"))
        loss = loss.reshape(())  # a (1,) loss counts as one number too
        # Exact accumulation: the batch-mean loss scaled by this micro-batch's share of the window, so
        # the window's summed gradient equals that of the mean loss over all its samples.
        scale = weight / self._window.expected
        scaled = loss if scale == 1.0 else loss * scale  # k = 1 with a known length: no extra op
        (scaled if self.scaler is None else self.scaler.scale(scaled)).backward()
        return loss

    def _optimizer_step(self) -> None:
        factor = (self._window.correction() if self._dist is None else
                  self._dist.correction(self._window, counted=self.job.batch_count is not None))
        if factor is not None:
            # the window held other counts than planned (unknown length, job counts): rescale to n_i/n_window
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(factor)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clipping and the norm see the true gradient
        self._clipper.clip(self.model.parameters())  # the window's whole gradient, once: never per micro-batch
        if self.scaler is None:
            self.optimizer.step()
        else:
            # the scaler's step already waits for its inf/NaN check (a sync of its own), so reading its
            # scale around update() costs no extra stall: a lowered scale means the step was skipped
            before = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scaler.get_scale() < before:
                self.progress.steps_skipped += 1
        if self.scheduler is not None and self.job.lr_scheduler_interval == "step":
            self.scheduler.step()  # once per optimizer step, never per micro-batch
        self.optimizer.zero_grad(set_to_none=True)
        self._losses.close_window()
        self.progress.record_step()
        self._window.close()

    def _safe_point(self) -> bool:
        """Before an iteration starts: apply commands, wait while paused. False means stop.

        While paused, each queued `StepOnce` lets exactly one iteration through (several queued
        ones run one after another); the loop then waits again.
        """
        began = time.perf_counter()  # trainmon's own time (a pause or a save left out): `monitor=`
        try:
            return self._safe_point_checked()
        finally:
            self.health.checked(time.perf_counter() - began)

    def _safe_point_checked(self) -> bool:
        self._apply_commands()
        control = self._control
        if not control.paused or control.stopping:
            if not control.stopping:
                self._maybe_save()
            return not control.stopping
        if not control.steps_allowed:
            self.core.wait_paused(self._waiting_commands, self._handle_paused)
        self.core.take_step()
        if not control.stopping:
            self._maybe_save()
        return not control.stopping

    def _maybe_save(self) -> None:
        """At a safe point: save when a viewer asked for it or the `--checkpoint-minutes` timer is due."""
        if self._control.save_requested:
            self._save("request")
        elif self._saver.timer_due():
            self._save("timer")

    def _apply_commands(self, force_agreement: bool = False) -> None:
        """Apply the commands waiting; on a rank, those every rank agreed on at this safe point (an
        agreement every few iterations, or now with `force_agreement`)."""
        commands = self.channel.poll_commands()
        if self._dist is not None:
            commands = self._agree(commands, force_agreement)
        for command in commands:
            self._handle(command)

    def _waiting_commands(self, timeout: float) -> list:
        """While paused: the next command, waiting up to `timeout` seconds. On a rank, every wait ends in an
        agreement (rank 0's heartbeat: the other ranks wait inside it, so no collective times out)."""
        if self._dist is None:
            command = self.channel.wait_command(timeout=timeout)
            return [] if command is None else [command]
        waited = self.channel.wait_command(timeout=timeout) if self._dist.is_main else None
        return self._agree([waited] if waited is not None else [], True)

    def _agree(self, commands: list, force: bool) -> list:
        return self._dist.agree(commands, (self.progress.global_iteration, self._speed.iterations_per_second,
                                           self._losses.last), force=force)

    def _handle(self, command: Any) -> None:
        """Apply one command or reject it with a reason, emitting the answer; never raises."""
        if isinstance(command, msg.SaveCheckpoint) and self._control.checkpoints_off is None:
            # a save at this safe point would hold what the newest one holds (an epoch end, say): say so
            why = self._saver.nothing_new((self.progress.global_iteration, self._changes))
            if why is not None:
                self.channel.emit(msg.CommandRejected(command, why))
                return
        if self.core.handle(command) and isinstance(command, (msg.SetBatchSize, msg.SetAccum)):
            self._changes += 1  # a checkpoint holds them

    def _handle_paused(self, command: Any) -> None:
        self._handle(command)
        if self._control.save_requested:
            self._save("request")  # a save asked for while paused happens now
