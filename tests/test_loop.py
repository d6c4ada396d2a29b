"""The training loop on real tiny models: accumulation by gradient comparison, losses, NaN, commands."""

from __future__ import annotations

import math
import time

import pytest
import torch
from conftest import collect, linear_job, regression_data
from torch import nn
from torch.utils.data import TensorDataset

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.jobs.job import Job, RunConfig
from trainmon.engine.run.trainer import Trainer


def run_job(job, **overrides):
    channel = Channel()
    trainer = Trainer(job, RunConfig.for_job(job, **overrides), channel)
    result = trainer.run()
    snaps, events = collect(channel)
    return trainer, result, snaps, events


def reference_params(windows: list[list[int]], lr: float = 0.1) -> list[torch.Tensor]:
    """Plain PyTorch: one SGD step per window on the mean MSE over all the window's samples."""
    torch.manual_seed(0)
    x, y = regression_data(53)
    model = nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    start = 0
    for sizes in windows:
        n = sum(sizes)
        opt.zero_grad()
        nn.functional.mse_loss(model(x[start:start + n]), y[start:start + n]).backward()
        opt.step()
        start += n
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("iterable", [False, True], ids=["map-style", "iterable"])
def test_accumulation_equals_one_big_batch_including_short_window(iterable):
    # 53 samples at b=8: 7 micro-batches (last holds 5); k=4 gives windows [4, 3] = 32 and 21 samples.
    trainer, result, _, events = run_job(linear_job(iterable=iterable), accum=4)
    assert isinstance(result, msg.Finished) and not result.stopped
    expected = reference_params([[8, 8, 8, 8], [8, 8, 5]])
    for got, want in zip(trainer.model.parameters(), expected):
        torch.testing.assert_close(got.detach(), want, atol=1e-6, rtol=0)
    ended = [e for e in events if isinstance(e, msg.EpochEnded)][0]
    assert (ended.iterations, ended.steps, ended.samples_seen) == (7, 2, 53)


def test_k_larger_than_epoch_is_one_full_batch_step():
    trainer, _, _, events = run_job(linear_job(), accum=50)
    for got, want in zip(trainer.model.parameters(), reference_params([[53]])):
        torch.testing.assert_close(got.detach(), want, atol=1e-6, rtol=0)
    assert [e.steps for e in events if isinstance(e, msg.EpochEnded)] == [1]


def test_shown_loss_under_accumulation_is_sample_weighted_mean_not_divided_by_k():
    # Micro-batch mean losses 0.8 and 0.6 over 32 samples each: the window's loss is 0.7.
    x = torch.zeros(64, 1)
    target = torch.cat([torch.full((32,), 0.8), torch.full((32,), 0.6)])
    model = nn.Linear(1, 1)
    job = Job(name="const", model=model, train_dataset=TensorDataset(x, target),
              loss_fn=lambda out, t: (out * 0).sum() + t.mean(), epochs=1, batch_size=32, accum=2, shuffle=False)
    trainer, _, snaps, events = run_job(job)
    ended = [e for e in events if isinstance(e, msg.EpochEnded)][0]
    assert ended.train_loss == pytest.approx(0.7)
    assert snaps[-1].window_loss == pytest.approx(0.7)
    assert snaps[-1].loss == pytest.approx(0.6)
    assert [y for _, y in trainer.loss_history.points()] == pytest.approx([0.8, 0.6])


def test_nan_loss_is_flagged_and_left_out_of_means():
    x = torch.zeros(40, 1)
    target = torch.tensor([1.0] * 10 + [float("nan")] * 10 + [3.0] * 10 + [float("inf")] * 10)
    job = Job(name="nan", model=nn.Linear(1, 1), train_dataset=TensorDataset(x, target),
              loss_fn=lambda out, t: (out * 0).sum() + t.mean(), epochs=1, batch_size=10, shuffle=False)
    trainer, result, snaps, events = run_job(job)
    flagged = [e for e in events if isinstance(e, msg.NonFiniteLoss)]
    assert [(e.global_iteration, math.isnan(e.value)) for e in flagged] == [(2, True), (4, False)]
    ended = [e for e in events if isinstance(e, msg.EpochEnded)][0]
    assert ended.train_loss == pytest.approx(2.0) and ended.nonfinite == 2
    assert snaps[-1].nonfinite_count == 2 and snaps[-1].last_nonfinite_iteration == 4
    assert snaps[-1].best_loss == pytest.approx(1.0)
    assert [x for x, _ in trainer.loss_history.nonfinite] == [2, 4]
    assert all(math.isfinite(y) for _, y in trainer.loss_history.points())


def test_digits_counters_and_totals():
    from trainmon.engine.jobs.builtin import digits_job

    job = digits_job()
    trainer, result, snaps, events = run_job(job, epochs=2, accum=4)
    started = [e for e in events if isinstance(e, msg.EpochStarted)]
    assert [(e.iterations, e.last_batch_size) for e in started] == [(45, 29), (45, 29)]
    ended = [e for e in events if isinstance(e, msg.EpochEnded)]
    assert [(e.iterations, e.steps, e.samples_seen) for e in ended] == [(45, 12, 1437), (45, 12, 2874)]
    first = snaps[0]
    assert (first.total_iterations, first.total_steps, first.total_samples) == (90, 24, 2874)
    last = snaps[-1]
    assert last.status == msg.FINISHED
    assert (last.global_iteration, last.global_step, last.samples_seen) == (90, 24, 2874)
    assert last.effective_batch_size == 128
    assert result.val_metrics["acc"] > 0.3  # 24 optimizer steps: well above chance (0.1), far from trained


def test_publication_is_rate_bounded_and_never_reads_loss_per_iteration(monkeypatch):
    reads = {"tolist": 0, "item": 0}
    real_tolist, real_item = torch.Tensor.tolist, torch.Tensor.item

    def counting_tolist(self):
        reads["tolist"] += 1
        return real_tolist(self)

    def counting_item(self):
        reads["item"] += 1
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    job = linear_job(m=800)  # 100 iterations
    channel = Channel()
    Trainer(job, RunConfig.for_job(job), channel, publish_interval=1e9).run()
    snaps, _ = collect(channel)
    assert snaps[-1].global_iteration == 100
    assert len(snaps) <= 5  # only the forced ones: start, epoch start, epoch end, finish
    assert reads["tolist"] <= 3  # one read of all unread losses per publication, not per iteration
    assert reads["item"] <= 1  # the DataLoader draws its base seed once per epoch (a CPU generator)


def wait_for(channel, predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        upd = channel.poll()
        seen.extend(upd.events)
        if upd.snapshot is not None and predicate(upd.snapshot):
            return upd.snapshot, seen
        time.sleep(0.01)
    raise AssertionError(f"timed out; last snapshot {channel.latest}")


def test_pause_step_resume_and_batch_size_change(thread_run):
    from trainmon.engine.jobs.builtin import digits_job

    job = digits_job()
    channel = Channel()
    channel.send(msg.Pause())  # before the first iteration
    run = thread_run(Trainer(job, RunConfig.for_job(job, epochs=2), channel))
    snap, _ = wait_for(channel, lambda s: s.status == msg.PAUSED)
    assert snap.global_iteration == 0
    time.sleep(0.3)
    channel.poll()
    assert channel.latest.global_iteration == 0 and channel.latest.status == msg.PAUSED  # frozen
    channel.send(msg.StepOnce())
    snap, _ = wait_for(channel, lambda s: s.global_iteration == 1)
    time.sleep(0.3)
    channel.poll()
    assert channel.latest.global_iteration == 1 and channel.latest.status == msg.PAUSED  # exactly one
    channel.send(msg.SetBatchSize(64))
    snap, _ = wait_for(channel, lambda s: s.pending)
    assert snap.pending[0].describe() == "batch size 32 → 64 at start of epoch 2"
    assert snap.total_iterations == 45 + 23
    channel.send(msg.Resume())
    run.thread.join(timeout=60)
    snaps, events = collect(channel)
    changed = [e for e in events if isinstance(e, msg.BatchSizeChanged)]
    assert [(e.old, e.new, e.epoch, e.global_iteration) for e in changed] == [(32, 64, 2, 45)]
    started = [e for e in events if isinstance(e, msg.EpochStarted)]
    assert [(e.batch_size, e.iterations, e.last_batch_size) for e in started] == [(64, 23, 29)]
    assert isinstance(run.result, msg.Finished) and run.result.global_iteration == 68
    assert snaps[-1].pending == ()


def test_stop_after_current_iteration(thread_run):
    job = linear_job(m=800, epochs=3)
    channel = Channel()
    channel.send(msg.Pause())
    run = thread_run(Trainer(job, RunConfig.for_job(job), channel))
    wait_for(channel, lambda s: s.status == msg.PAUSED)
    channel.send(msg.StepOnce())
    wait_for(channel, lambda s: s.global_iteration == 1)
    channel.send(msg.Stop())
    run.thread.join(timeout=20)
    assert isinstance(run.result, msg.Finished)
    assert run.result.stopped and run.result.global_iteration == 1 and run.result.epochs_completed == 0


def test_accum_change_applies_at_next_window_start(thread_run):
    job = linear_job(m=80, accum=2)  # 10 iterations
    channel = Channel()
    channel.send(msg.Pause())
    run = thread_run(Trainer(job, RunConfig.for_job(job), channel))
    wait_for(channel, lambda s: s.status == msg.PAUSED)
    channel.send(msg.StepOnce())
    wait_for(channel, lambda s: s.global_iteration == 1)
    channel.send(msg.SetAccum(3))  # mid-window: waits for the window to close
    snap, _ = wait_for(channel, lambda s: bool(s.pending))
    assert snap.pending[0].what == "accumulation steps" and snap.accum == 2
    assert snap.total_steps == 1 + 3  # this window, then 8 iterations in windows of 3 → 3 steps
    channel.send(msg.Resume())
    run.thread.join(timeout=20)
    _, events = collect(channel)
    changed = [e for e in events if isinstance(e, msg.AccumChanged)]
    assert [(e.old, e.new, e.global_iteration) for e in changed] == [(2, 3, 2)]
    ended = [e for e in events if isinstance(e, msg.EpochEnded)][0]
    assert ended.steps == 1 + 3  # windows [2, 3, 3, 2]
    assert ended.accum == 3


def test_invalid_commands_are_rejected_and_the_run_goes_on():
    job = linear_job(m=80, epochs=2)
    channel = Channel()
    for command in [msg.SetBatchSize(0), msg.SetBatchSize("x"), msg.SetAccum(-1), msg.StepOnce(), msg.Resume(),
                    msg.SetBatchSize(8), "bogus"]:
        channel.send(command)
    result = Trainer(job, RunConfig.for_job(job), channel).run()
    _, events = collect(channel)
    reasons = [e.reason for e in events if isinstance(e, msg.CommandRejected)]
    assert reasons == [
        "batch size must be a whole number >= 1, got 0",
        "batch size must be a whole number >= 1, got 'x'",
        "accumulation steps must be a whole number >= 1, got -1",
        "single-iteration step works only while paused",
        "not paused",
        "batch size is already 8",
        "unknown command str",
    ]
    assert isinstance(result, msg.Finished) and result.global_iteration == 20


def test_unknown_length_gives_none_totals_and_ends_with_the_loader():
    job = linear_job(iterable=True, epochs=2)
    trainer, result, snaps, events = run_job(job, accum=3)
    assert snaps[0].total_iterations is None and snaps[0].eta_seconds is None
    assert [e.iterations_planned for e in events if isinstance(e, msg.EpochEnded)] == [None, None]
    assert [e.steps for e in events if isinstance(e, msg.EpochEnded)] == [3, 3]
    assert result.global_iteration == 14 and result.samples_seen == 106


def test_failure_in_the_model_becomes_a_failed_event():
    job = linear_job()
    job.loss_fn = lambda out, t: (_ for _ in ()).throw(ValueError("boom in loss"))
    channel = Channel()
    result = Trainer(job, RunConfig.for_job(job), channel).run()
    assert isinstance(result, msg.Failed)
    assert result.message.startswith("ValueError: boom in loss (at test_loop.py:")  # the user's frame
    assert result.user_traceback.startswith("Traceback (your code; trainmon and library frames hidden):")
    assert "engine/run/trainer.py" not in result.user_traceback and "engine/run/trainer.py" in result.traceback
    snaps, events = collect(channel)
    assert snaps[-1].status == msg.FAILED and events[-1] == result


def test_epoch_ended_carries_peak_memory_from_the_sampler():
    import psutil

    from trainmon.engine.telemetry.sampler import DeviceSampler

    job = linear_job(epochs=2)
    sampler = DeviceSampler(interval=60.0)  # not started: only the epoch-boundary samples count
    channel = Channel()
    Trainer(job, RunConfig.for_job(job), channel, sampler=sampler).run()
    _, events = collect(channel)
    peaks = [e.peak_memory for e in events if isinstance(e, msg.EpochEnded)]
    rss_now = psutil.Process().memory_info().rss / 2**20
    assert len(peaks) == 2
    for peak in peaks:
        assert 0 < peak["host_rss_mib"] <= rss_now * 1.5
        assert peak["gpu_memory_used_mib"] == {}  # no NVIDIA GPU here


def test_queued_steps_each_run_one_iteration(thread_run):
    job = linear_job(m=800)
    channel = Channel()
    channel.send(msg.Pause())
    thread_run(Trainer(job, RunConfig.for_job(job), channel))
    wait_for(channel, lambda s: s.status == msg.PAUSED)
    for _ in range(3):  # pressed quickly: all three land in the queue together
        channel.send(msg.StepOnce())
    snap, _ = wait_for(channel, lambda s: s.global_iteration == 3 and s.status == msg.PAUSED)
    time.sleep(0.3)
    channel.poll()
    assert channel.latest.global_iteration == 3 and channel.latest.status == msg.PAUSED
    assert channel.latest.iterations_per_second is None  # nothing moves while paused


def test_long_runs_cost_no_more_per_snapshot(monkeypatch):
    # 100,000 epochs: the planned totals are multiplied out and cached, not walked epoch by epoch
    import trainmon.engine.core.arithmetic as arithmetic
    from trainmon.engine.core.progress import Progress
    from trainmon.engine.core.schedule import BatchSizePolicy
    from trainmon.engine.core.totals import PlannedTotals

    calls = {"n": 0}
    real = arithmetic.epoch_counts

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(arithmetic, "epoch_counts", counting)
    policy = BatchSizePolicy(8, epochs=100_000, dataset_size=80)
    totals = PlannedTotals(80, 100_000)
    progress = Progress()
    policy.begin_epoch(0, 0)
    totals.begin_epoch(10, 80, 0)
    progress.start_epoch(1)
    for _ in range(100):
        planned = totals.totals(progress, 1, 1, *policy.schedule_from(progress.epoch))
    assert planned == (1_000_000, 1_000_000, 8_000_000, 10)
    assert calls["n"] <= 2  # at most two later epochs looked at, once, for 100 snapshots


def test_request_stop_is_seen_running_and_paused(thread_run):
    job = linear_job(m=800, epochs=50)
    channel = Channel()
    channel.send(msg.Pause())
    run = thread_run(Trainer(job, RunConfig.for_job(job), channel))
    wait_for(channel, lambda s: s.status == msg.PAUSED)
    channel.request_stop()  # what a signal handler does: no lock taken
    run.thread.join(timeout=20)
    assert isinstance(run.result, msg.Finished) and run.result.stopped and run.result.global_iteration == 0


def test_planned_totals_follow_a_schedule_that_stays_at_one_before_growing():
    # b_t = floor(1 · 1.5^t) = 1, 1, 2, 3, 5, 7: two epochs at b = 1 do not make the schedule constant
    job = linear_job(m=40, epochs=6)
    published = []
    channel = Channel(listener=published.append)
    result = Trainer(job, RunConfig.for_job(job, batch_size=1, batch_growth=1.5), channel).run()
    started = [e for e in published if isinstance(e, msg.EpochStarted)]
    assert [(e.batch_size, e.iterations) for e in started] == [(1, 40), (1, 40), (2, 20), (3, 14), (5, 8), (7, 6)]
    snaps = [s for s in published if isinstance(s, msg.Snapshot)]
    assert result.global_iteration == 128
    assert {s.total_iterations for s in snaps} == {128}  # planned right from the first snapshot


def test_after_a_step_the_snapshot_shows_the_coming_window_even_the_short_last_one():
    """Issue 26 trial: at 44 of 45 iterations (accum 4) the step of the 11th window has just landed and the
    next window is the short one of 1: a viewer must see `0/1 · next in 1`, not the window just stepped."""
    job = linear_job(m=45 * 2, batch_size=2, accum=4)  # 45 iterations: windows 4 × 11 + 1
    seen: list = []
    channel = Channel(listener=seen.append)  # every snapshot, not only the newest
    Trainer(job, RunConfig.for_job(job, epochs=1), channel, publish_interval=0.0).run()
    at = {s.global_iteration: s for s in seen if isinstance(s, msg.Snapshot) and s.status == msg.RUNNING}
    assert (at[44].window_position, at[44].window_size, at[44].global_step) == (0, 1, 11)
    assert (at[40].window_position, at[40].window_size) == (0, 4)
    assert (at[42].window_position, at[42].window_size) == (2, 4)
