"""Validation runs at the training batch size unless told (never a hidden 256); an LR schedule can
step once per optimizer step (a warm-up in steps), never per micro-batch."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import collect, linear_job, regression_data
from torch.utils.data import TensorDataset
from torch.utils.data.dataloader import default_collate

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.jobs.loader import JobError
from trainmon.engine.jobs.preflight import preflight
from trainmon.engine.run.trainer import Trainer


def recording_job(**changes):
    """The linear job with 13 validation samples and a collate_fn that records every batch's size."""
    sizes: list[int] = []

    def collate(items):
        sizes.append(len(items))
        return default_collate(items)

    x, y = regression_data(13, seed=2)
    job = dataclasses.replace(linear_job(), val_dataset=TensorDataset(x, y), collate_fn=collate, **changes)
    return job, sizes


@pytest.mark.parametrize("val_batch_size, expected", [(None, [8, 5]), (10, [10, 3]), (64, [13])])
def test_validation_batches_default_to_the_training_batch_size(val_batch_size, expected):
    job, sizes = recording_job()
    config = RunConfig.for_job(job, val_batch_size=val_batch_size)  # b = 8; 53 training samples
    assert preflight(job, config) == [] and sizes[:2] == [8, min(val_batch_size or 8, 8)]  # never above b
    sizes.clear()
    result = Trainer(job, config, Channel()).run()
    assert sizes == [8] * 6 + [5] + expected  # 7 training batches, then validation
    reference = Trainer(recording_job()[0], RunConfig.for_job(job, val_batch_size=1), Channel()).run()
    assert result.val_loss == pytest.approx(reference.val_loss, rel=1e-6)  # a sample-weighted mean either way


def test_the_job_default_and_bad_values():
    job, _ = recording_job(val_batch_size=4)
    assert RunConfig.for_job(job).val_batch_size == 4
    assert RunConfig.for_job(job, val_batch_size=6).val_batch_size == 6
    from trainmon.engine.core.arithmetic import PlanError

    with pytest.raises(PlanError, match="^validation batch size must be a whole number >= 1, got 0$"):
        RunConfig.for_job(job, val_batch_size=0)


def warmup_job(interval: str, steps: int = 10):
    job = dataclasses.replace(
        linear_job(epochs=2), lr_scheduler_interval=interval,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / steps)))
    return job


def test_a_per_step_warm_up_counts_optimizer_steps_not_micro_batches():
    # 53 samples at b = 8: 7 iterations an epoch; accum 3 → windows [3, 3, 1] = 3 optimizer steps an epoch
    channel = Channel()
    trainer = Trainer(warmup_job("step", steps=4), RunConfig.for_job(warmup_job("step"), accum=3), channel)
    trainer.run()
    assert trainer.scheduler.last_epoch == 6  # 2 epochs x 3 optimizer steps, not 14 micro-batches
    ended = [e for e in collect(channel)[1] if isinstance(e, msg.EpochEnded)]
    # after 3 steps the rate is (3 + 1) / 4 of 0.1; after 4 or more it is the full 0.1
    assert [e.lr for e in ended] == [pytest.approx(0.1), pytest.approx(0.1)]
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)

    per_epoch = Trainer(warmup_job("epoch"), RunConfig.for_job(warmup_job("epoch"), accum=3), Channel())
    per_epoch.run()
    assert per_epoch.scheduler.last_epoch == 2  # once per epoch
    assert per_epoch.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 3 / 10)


def test_a_plateau_scheduler_per_step_is_refused_in_one_line():
    job = dataclasses.replace(linear_job(), lr_scheduler_interval="step",
                              lr_scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt))
    with pytest.raises(JobError, match='^ReduceLROnPlateau watches an epoch\'s loss: give it lr_scheduler_interval="epoch"$'):
        preflight(job, RunConfig.for_job(job))
    job = dataclasses.replace(linear_job(), lr_scheduler_interval="batch",
                              lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1))
    with pytest.raises(JobError, match='^Job.lr_scheduler_interval must be "epoch" or "step", got \'batch\'$'):
        preflight(job, RunConfig.for_job(job))
