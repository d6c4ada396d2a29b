"""The OOM guard: a batch-size increase that runs out of memory goes back to the last batch size that
worked and redoes the epoch; nothing of the failed iteration reaches the weights; counters stay exact.
On the CPU, with a model that raises torch.OutOfMemoryError above a batch size (a faithful stand-in
for CUDA's, which is a subclass of it)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.jobs.builtin import digits_job
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.run.trainer import Trainer


class Fragile(nn.Module):
    """A small net whose forward runs out of "memory" from the `after`-th batch larger than `limit`."""

    def __init__(self, limit: int, after: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        self.limit, self.after, self.big = limit, after, 0

    def forward(self, x):
        if x.shape[0] > self.limit and self.training:
            self.big += 1
            if self.big >= self.after:
                raise torch.OutOfMemoryError(f"tried to allocate a batch of {x.shape[0]}")
        return self.net(x)


class Watch(Channel):
    """Keeps the weights as they were at each epoch end and at the revert."""

    def __init__(self, after_epoch: dict) -> None:
        super().__init__()
        self.trainer, self.at_epoch_end, self.at_revert, self.after_epoch = None, {}, None, after_epoch

    def emit(self, event):
        if isinstance(event, msg.EpochEnded):
            self.at_epoch_end[event.epoch] = [p.detach().clone() for p in self.trainer.model.parameters()]
            for command in self.after_epoch.pop(event.epoch, []):
                self.send(command)  # applied at the next epoch's start
        if isinstance(event, msg.BatchSizeReverted):
            self.at_revert = [p.detach().clone() for p in self.trainer.model.parameters()]
        super().emit(event)


def run(job, config, after_epoch):
    channel = Watch(after_epoch)
    trainer = Trainer(job, config, channel)
    channel.trainer = trainer
    result = trainer.run()
    events = []
    while True:
        update = channel.poll()
        events += update.events
        if not update.events and update.snapshot is None:
            break
    return trainer, result, events, channel


def test_a_bigger_batch_that_runs_out_of_memory_goes_back_and_redoes_the_epoch():
    # b = 32 (45 iterations an epoch), accum 4; asked for 64 from epoch 2: its 3rd iteration runs out of
    # memory with 2 micro-batches accumulated in the open window
    job = dataclasses.replace(digits_job(), model=Fragile(limit=48, after=3))
    config = RunConfig.for_job(job, epochs=3, accum=4)
    trainer, result, events, channel = run(job, config, {1: [msg.SetBatchSize(batch_size=64)]})
    assert isinstance(result, msg.Finished) and not result.stopped, result
    [reverted] = [e for e in events if isinstance(e, msg.BatchSizeReverted)]
    assert (reverted.old, reverted.new, reverted.epoch, reverted.iteration_in_epoch) == (64, 32, 2, 2)
    assert reverted.message == "batch size 64 ran out of memory at iteration 3 of epoch 2 — back to 32"
    # the two 64-sample micro-batches of the open window never reached the weights: no step was taken
    assert all(torch.equal(a, b) for a, b in zip(channel.at_revert, channel.at_epoch_end[1]))
    ended = [e for e in events if isinstance(e, msg.EpochEnded)]
    assert [(e.epoch, e.batch_size, e.iterations, e.steps) for e in ended] == [(1, 32, 45, 12), (2, 32, 45, 12),
                                                                           (3, 32, 45, 12)]
    # counters: every iteration that ran is counted (the 2 at 64 as well), the failed one is not
    assert (result.global_iteration, result.samples_seen) == (3 * 45 + 2, 3 * 1437 + 2 * 64)
    assert result.global_step == 3 * 12  # the half window at 64 was dropped, not stepped


def test_asking_again_for_the_failed_size_needs_asking_twice():
    job = dataclasses.replace(digits_job(), model=Fragile(limit=48))
    config = RunConfig.for_job(job, epochs=4)
    trainer, result, events, _ = run(job, config, {1: [msg.SetBatchSize(batch_size=64)]})
    assert [e.new for e in events if isinstance(e, msg.BatchSizeReverted)] == [32]
    policy = trainer._batch_sizes
    assert policy.request(64, 2) == "batch size 64 ran out of memory in this run; ask for 64 again to try it anyway"
    assert policy.request(64, 2) is None  # the second time is the confirmation


def test_out_of_memory_with_nothing_to_go_back_to_fails_in_one_line():
    job = dataclasses.replace(digits_job(), model=Fragile(limit=16))
    trainer, result, events, _ = run(job, RunConfig.for_job(job, epochs=2), {})
    assert isinstance(result, msg.Failed) and result.phase == "training"
    assert result.message.startswith("out of memory at batch size 32, iteration 1 of epoch 1: no smaller batch "
                                     "size has worked in this run to go back to; try a smaller --batch-size")
