"""The live learning rate (per parameter group when they differ) and the pre-clip gradient norm: on headless
`progress` and epoch lines, in export rows and in TensorBoard, from a real run with two groups and clipping."""

from __future__ import annotations

import pytest
import torch
from conftest import collect, linear_job
from fakes import digits_mid_run
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.core.rates import group_rates, rate_fields, rate_scalars
from trainmon.engine.core.report import epoch_line, progress_line
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.record.export import epoch_record
from trainmon.engine.record.tensorboard import TensorBoardSink
from trainmon.engine.run.trainer import Trainer


@pytest.mark.parametrize("lr, rates, norm, fields, scalars", [
    (0.05, (0.05,), None, " lr=0.05", {"lr": 0.05}),
    (0.05, (0.05, 0.05), None, " lr=0.05", {"lr": 0.05}),  # one rate: no groups
    (0.1, (0.1, 0.01), 3.25, " lr=0.1 lr_groups=0.1,0.01 grad_norm=3.25",
     {"lr": 0.1, "lr_group_0": 0.1, "lr_group_1": 0.01, "grad_norm": 3.25}),
    (None, (), None, " lr=n/a", {}),
])
def test_rate_fields_and_scalars(lr, rates, norm, fields, scalars):
    assert rate_fields(lr, rates, norm) == fields
    assert rate_scalars(lr, rates, norm) == scalars
    assert group_rates(rates) == (rates if len(set(rates)) > 1 else ())


def test_the_progress_line_carries_the_rate():
    line = progress_line(digits_mid_run(lr=0.05, learning_rates=(0.05,)))
    assert line.endswith(" lr=0.05")
    line = progress_line(digits_mid_run(lr=3e-4, learning_rates=(3e-4, 3e-5), grad_norm=0.8125, clip_grad_norm=1.0))
    assert line.endswith(" lr=0.0003 lr_groups=0.0003,3e-05 grad_norm=0.8125")


def _two_groups(params, lr):
    weight, bias = list(params)
    return torch.optim.SGD([{"params": [weight], "lr": lr}, {"params": [bias], "lr": lr / 10}])


def test_a_run_with_two_groups_and_clipping_shows_both_rates_and_the_norm(tmp_path):
    job = linear_job(epochs=2, optimizer=_two_groups, clip_grad_norm=0.5)
    sink = TensorBoardSink(tmp_path / "tb")
    channel = Channel(sinks=[sink])
    Trainer(job, RunConfig.for_job(job), channel).run()
    sink.close()
    snaps, events = collect(channel)
    ended = [e for e in events if isinstance(e, msg.EpochEnded)]
    assert [e.learning_rates for e in ended] == [(0.1, 0.01), (0.1, 0.01)]
    norms = [e.grad_norm for e in ended]
    assert all(n is not None and n > 0.5 for n in norms)  # above the max: clipped, and shown before clipping
    assert f" lr_groups=0.1,0.01 grad_norm={norms[0]:g} samples_per_s=" in epoch_line(ended[0])  # throughput last
    assert " lr=0.1 " in epoch_line(ended[0])  # the first group's, as before
    row = epoch_record(ended[1])
    assert (row["lr"], row["lr_group_0"], row["lr_group_1"], row["grad_norm"]) == (0.1, 0.1, 0.01, norms[1])
    assert f" lr=0.1 lr_groups=0.1,0.01 grad_norm={snaps[-1].grad_norm:g} samples_per_s=" in progress_line(snaps[-1])

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    lr1 = acc.Scalars("train/lr_group_1")
    assert lr1 and [e.value for e in lr1] == pytest.approx([0.01] * len(lr1))
    steps = [e.step for e in acc.Scalars("train/lr")]
    assert steps == sorted(set(steps)) and steps[-1] == ended[-1].global_iteration  # once a publication, live
    assert [e.step for e in acc.Scalars("train/grad_norm")] == steps
    assert [e.value for e in acc.Scalars("epoch/grad_norm")] == pytest.approx(norms)
    assert [e.value for e in acc.Scalars("epoch/lr_group_1")] == pytest.approx([0.01, 0.01])
