"""Mixed precision: bf16 autocast trains on the CPU; with fp16's grad scaler a skipped step is counted
apart, once per window (the scaler unscales, clips and steps once per window)."""

from __future__ import annotations

import pytest
import torch
from conftest import collect
from test_clipping import dot_job

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.core.arithmetic import PlanError
from trainmon.engine.jobs.builtin import digits_job
from trainmon.engine.jobs.job import RunConfig, check_precision
from trainmon.engine.run.trainer import Trainer


def test_bf16_with_accumulation_and_clipping_trains_digits():
    job = digits_job()
    channel = Channel()
    result = Trainer(job, RunConfig.for_job(job, precision="bf16", accum=4, clip_grad_norm=1.0, epochs=8,
                                            lr=0.2), channel).run()
    assert isinstance(result, msg.Finished) and result.val_metrics["acc"] >= 0.9
    last = collect(channel)[0][-1]
    assert (last.precision, last.steps_skipped, last.global_step) == ("bf16", 0, 8 * 12)
    assert last.grad_norm is not None and 0 <= last.clipped_steps <= last.global_step


def test_fp16_scaler_skips_overflowing_windows_and_counts_them_apart():
    # 4 windows of 2 micro-batches; windows 2 and 4 hold an input too large for fp16 (inf in the forward)
    big = 1e6
    rows = [[1, 0], [0, 1], [big, 0], [0, 1], [1, 0], [0, 1], [0, big], [1, 0]]
    job = dot_job([[float(v) for v in r] for r in rows])
    channel = Channel()
    trainer = Trainer(job, RunConfig.for_job(job, accum=2, precision="fp16"), channel)  # CPU: in-process only
    result = trainer.run()
    snaps, events = collect(channel)
    last = snaps[-1]
    # window 1 overflows at the scaler's initial scale 2**16 (the scaler halves it, as on a GPU); windows
    # 2 and 4 overflow at any scale; window 3 is applied: 4 windows = 4 steps, 1 applied, 3 skipped
    assert (result.global_step, last.steps_skipped) == (4, 3)
    from trainmon.engine.core.report import epoch_line

    [ended] = [e for e in events if isinstance(e, msg.EpochEnded)]
    # the 2 inf losses: flagged, not averaged
    assert ended.steps_skipped == 3 and " global_step=4 nonfinite=2/8 data_wait=" in epoch_line(ended) \
        and " steps_skipped=3 samples_per_s=" in epoch_line(ended)  # then the throughput, last
    torch.testing.assert_close(trainer.model.w.detach(), torch.tensor([-0.5, -0.5]))  # window 3's step alone


def test_fp16_needs_cuda_and_bad_names_are_refused():
    with pytest.raises(PlanError, match="^--precision fp16 needs a CUDA device .* use --precision bf16$"):
        check_precision("fp16", torch.device("cpu"))
    check_precision("bf16", torch.device("cpu"))
    with pytest.raises(PlanError, match="^precision must be one of fp32, bf16, fp16, got 'fp8'$"):
        RunConfig.for_job(digits_job(), precision="fp8")
