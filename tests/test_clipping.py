"""Gradient clipping acts once per window on the accumulated gradient, never per micro-batch."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import collect
from torch import nn
from torch.utils.data import TensorDataset

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.core.arithmetic import PlanError
from trainmon.engine.jobs.job import Job, RunConfig
from trainmon.engine.run.trainer import Trainer


class Dot(nn.Module):
    """loss_i = w · x_i: a micro-batch's gradient is its x (scaled by its share of the window)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return x @ self.w


def dot_job(rows) -> Job:
    x = torch.tensor(rows, dtype=torch.float32)
    return Job(name="dot", model=Dot(), train_dataset=TensorDataset(x, torch.zeros(len(rows))),
               loss_fn=lambda out, _: out.mean(), optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr),
               epochs=1, batch_size=1, lr=1.0, shuffle=False)


@pytest.mark.parametrize("clip, expected", [(None, [-2.0, -2.0]), (1.0, [-1 / math.sqrt(2), -1 / math.sqrt(2)])])
def test_micro_batch_gradients_2_0_and_0_2_clip_as_one_window(clip, expected):
    # two micro-batches of one sample, accum 2: each loss is weighted 1/2, so [4, 0] and [0, 4] give
    # window gradients [2, 0] + [0, 2] = [2, 2] (norm 2.83); clipped to 1: [0.707, 0.707]. Clipping each
    # micro-batch (the known mistake) would give [1, 1].
    job = dot_job([[4.0, 0.0], [0.0, 4.0]])
    channel = Channel()
    trainer = Trainer(job, RunConfig.for_job(job, accum=2, clip_grad_norm=clip), channel)
    trainer.run()
    torch.testing.assert_close(trainer.model.w.detach(), torch.tensor(expected), atol=1e-6, rtol=0)
    last = collect(channel)[0][-1]
    if clip is None:
        assert (last.clip_grad_norm, last.grad_norm, last.clipped_steps) == (None, None, 0)
    else:
        assert last.clip_grad_norm == 1.0 and last.clipped_steps == 1
        assert last.grad_norm == pytest.approx(2 * math.sqrt(2))  # the pre-clip norm of the step


def test_only_steps_above_the_norm_count_as_clipped():
    job = dot_job([[0.1, 0.0], [0.0, 0.1], [4.0, 0.0], [0.0, 4.0]])  # windows of norm 0.07 and 2.83
    channel = Channel()
    Trainer(job, RunConfig.for_job(job, accum=2, clip_grad_norm=1.0), channel).run()
    last = collect(channel)[0][-1]
    assert (last.global_step, last.clipped_steps) == (2, 1)
    assert isinstance(last, msg.Snapshot)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
def test_bad_norms_are_refused_in_one_line(bad):
    with pytest.raises(PlanError, match="^gradient clipping norm must be > 0 and finite, got "):
        RunConfig.for_job(dot_job([[1.0, 0.0]]), clip_grad_norm=bad)
