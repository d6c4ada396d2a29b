"""The Trainer's units one by one: each driven, saved with state_dict(), loaded into a fresh one, compared whole."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import linear_job

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.core.arithmetic import BatchSizeSchedule
from trainmon.engine.core.history import History
from trainmon.engine.core.progress import Progress
from trainmon.engine.core.run_control import RunControl
from trainmon.engine.core.schedule import BatchSizePolicy
from trainmon.engine.core.speed import Speed
from trainmon.engine.core.totals import PlannedTotals
from trainmon.engine.core.window import AccumulationWindow
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.run.losses import LossTracker
from trainmon.engine.run.trainer import Trainer


def round_trip(unit, fresh):
    """Save `unit`, load into `fresh`; the state is plain data (survives JSON) and comes back whole."""
    state = unit.state_dict()
    assert json.loads(json.dumps(state)) == state
    fresh.load_state_dict(json.loads(json.dumps(state)))
    assert fresh.state_dict() == state
    return state


# ----------------------------------------------------------------------------------------------
# batch sizes
# ----------------------------------------------------------------------------------------------


def test_batch_size_policy_follows_the_schedule_and_a_request():
    policy = BatchSizePolicy(8, growth=2.0, max_batch_size=40, epochs=6, dataset_size=200)
    sizes = []
    for t in range(3):
        policy.begin_epoch(t, 10 * t)
        sizes.append(policy.batch_size)
    assert sizes == [8, 16, 32]
    assert policy.request(12, epoch=3) is None
    assert policy.pending_change(3) == msg.PendingChange("batch size", 32, 12, "start of epoch 4")
    assert policy.schedule_from(3) == (BatchSizeSchedule(12, 2.0, 40), 0)
    changes = policy.begin_epoch(3, 99)
    assert changes == [msg.BatchSizeChanged(32, 12, 4, 99)]
    assert (policy.batch_size, policy.base, policy.origin, policy.pending) == (12, 12, 3, None)
    assert policy.begin_epoch(4, 120) == [msg.BatchSizeChanged(12, 24, 5, 120)]
    assert policy.begin_epoch(5, 130) == [msg.BatchSizeChanged(24, 40, 6, 130)]  # capped


def test_batch_size_policy_state_dict_round_trip():
    policy = BatchSizePolicy(8, growth=1.5, max_batch_size=64, epochs=10, dataset_size=500)
    for t in range(3):
        policy.begin_epoch(t, t)
    policy.request(20, epoch=3)
    fresh = BatchSizePolicy(8, growth=1.5, max_batch_size=64, epochs=10, dataset_size=500)
    state = round_trip(policy, fresh)
    assert state == {"base": 8, "origin": 0, "batch_size": 18, "pending": 20, "failed": None, "schedule_cap": None}
    assert fresh.schedule_from(3) == policy.schedule_from(3)
    # both go on identically: the pending request applies, then the schedule grows from it
    assert [fresh.begin_epoch(t, 0) for t in range(3, 6)] == [policy.begin_epoch(t, 0) for t in range(3, 6)]
    assert fresh.state_dict() == policy.state_dict() == {"base": 20, "origin": 3, "batch_size": 45, "pending": None,
                                                         "failed": None, "schedule_cap": None}


def test_a_request_above_the_cap_is_refused_with_the_reason():
    policy = BatchSizePolicy(64, growth=2.0, max_batch_size=256, epochs=5, dataset_size=10_000)
    assert policy.request(512, epoch=1) == "batch size 512 is above the cap --max-batch-size 256"
    assert policy.pending is None
    assert policy.request(256, epoch=1) is None  # the cap itself is fine
    assert policy.request(2**31, epoch=1) == "batch size must be at most 2147483647, got 2147483648"
    assert policy.request(True, epoch=1) == "batch size must be a whole number >= 1, got True"


def test_set_batch_size_above_the_cap_is_rejected_and_the_batch_size_that_ran_is_unchanged():
    job = linear_job(m=80, epochs=3)
    channel = Channel()
    channel.send(msg.SetBatchSize(32))
    result = Trainer(job, RunConfig.for_job(job, max_batch_size=16), channel).run()
    events = []
    while True:
        update = channel.poll()
        if update.snapshot is None and not update.events:
            break
        events += update.events
    rejected = [e for e in events if isinstance(e, msg.CommandRejected)]
    assert [(e.command, e.reason) for e in rejected] == [
        (msg.SetBatchSize(32), "batch size 32 is above the cap --max-batch-size 16")]
    assert not [e for e in events if isinstance(e, (msg.BatchSizeChanged, msg.CommandAccepted))]
    assert [(e.batch_size, e.iterations) for e in events if isinstance(e, msg.EpochStarted)] == [(8, 10)] * 3
    assert [e.batch_size for e in events if isinstance(e, msg.EpochEnded)] == [8, 8, 8]
    assert isinstance(result, msg.Finished) and (result.global_iteration, result.samples_seen) == (30, 240)


# ----------------------------------------------------------------------------------------------
# accumulation window
# ----------------------------------------------------------------------------------------------


def test_accumulation_window_weights_and_pending_change():
    window = AccumulationWindow(4)
    window.open(4, 7, 53, 8, False, exact=True)  # iterations 4, 5, 6 of 7: 8 + 8 + 5 samples
    assert (window.size, window.expected) == (3, 21.0)
    assert window.request(2) is None and window.next_accum == 2
    assert window.request(0) == "accumulation steps must be a whole number >= 1, got 0"
    assert window.pending_change() == msg.PendingChange("accumulation steps", 4, 2, "the next window")
    for w in (8.0, 8.0, 5.0):
        window.weight += w
    assert window.correction() is None  # held what was planned
    assert window.apply_pending() == (4, 2) and window.pending is None
    window.open(0, None, None, 8, False, exact=True)  # unknown length: a guess, corrected at the step
    window.weight += 8.0 + 3.0
    assert window.expected == 16.0 and window.correction() == pytest.approx(16.0 / 11.0)


def test_accumulation_window_state_dict_round_trip():
    window = AccumulationWindow(3)
    window.open(0, None, None, 16, False, exact=False)
    window.weight += 16.0
    window.request(5)
    fresh = AccumulationWindow(1)
    state = round_trip(window, fresh)
    assert state == {"accum": 3, "pending": 5, "size": 3, "expected": 48.0, "weight": 16.0}
    fresh.weight += 10.0
    window.weight += 10.0
    assert fresh.correction() == window.correction() == pytest.approx(48.0 / 26.0)


# ----------------------------------------------------------------------------------------------
# run control
# ----------------------------------------------------------------------------------------------


def make_control():
    return RunControl(BatchSizePolicy(8, epochs=3, dataset_size=80), AccumulationWindow(2))


def test_run_control_answers_each_command():
    control = make_control()
    assert control.handle(msg.Resume(), 1, 5) == [msg.CommandRejected(msg.Resume(), "not paused")]
    assert control.handle(msg.Pause(id="p"), 1, 5) == [msg.CommandAccepted(msg.Pause(id="p"))]
    assert control.handle(msg.Pause(), 1, 5) == [msg.CommandRejected(msg.Pause(), "already paused")]
    assert control.waiting and control.status == msg.STARTING  # PAUSED only once the loop waits
    assert control.announce_pause(5) == msg.Paused(5) and control.status == msg.PAUSED
    assert control.announce_pause(5) is None  # once per pause
    control.handle(msg.StepOnce(), 1, 5)
    control.handle(msg.StepOnce(), 1, 5)
    assert not control.waiting and control.take_step() and control.take_step() and not control.take_step()
    assert control.handle(msg.Resume(), 1, 7) == [msg.Resumed(7), msg.CommandAccepted(msg.Resume())]
    assert control.status == msg.RUNNING and not control.paused
    assert control.handle(msg.SetBatchSize(8), 1, 7) == [msg.CommandRejected(msg.SetBatchSize(8), "batch size is already 8")]
    assert control.handle(msg.SetAccum(3), 1, 7) == [msg.CommandAccepted(msg.SetAccum(3))]
    assert control.handle(msg.SetBatchSize(16), 1, 7) == [msg.CommandAccepted(msg.SetBatchSize(16))]
    assert [c.describe() for c in control.pending(1)] == [
        "batch size 8 → 16 at start of epoch 2", "accumulation steps 2 → 3 at the next window"]
    assert control.handle("bogus", 1, 7) == [msg.CommandRejected("bogus", "unknown command str")]
    assert control.handle(msg.Stop(), 1, 7) == [msg.CommandAccepted(msg.Stop())]
    assert control.stopping and control.status == msg.STOPPING


def test_run_control_state_dict_round_trip():
    control = make_control()
    control.status = msg.RUNNING
    control.handle(msg.Pause(), 1, 3)
    control.announce_pause(3)
    control.handle(msg.StepOnce(), 1, 3)
    control.handle(msg.StepOnce(), 1, 3)
    fresh = make_control()
    state = round_trip(control, fresh)
    assert state == {"status": "paused", "paused": True, "stopping": False, "pause_announced": True,
                     "steps_allowed": 2}
    assert fresh.status is msg.PAUSED
    assert fresh.handle(msg.Resume(), 1, 4) == control.handle(msg.Resume(), 1, 4) == [
        msg.Resumed(4), msg.CommandAccepted(msg.Resume())]
    assert fresh.state_dict() == control.state_dict()


# ----------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------


def test_loss_tracker_reads_once_and_keeps_true_means():
    tracker = LossTracker(History())
    for i, (value, weight) in enumerate([(0.8, 32.0), (0.6, 32.0), (float("nan"), 8.0), (0.2, 16.0)], start=1):
        tracker.record(torch.tensor(value), i, weight)
        if i in (2, 4):
            tracker.close_window()
    flagged = tracker.flush()
    assert len(flagged) == 1 and flagged[0][0] == 3 and math.isnan(flagged[0][1])
    assert tracker.last == pytest.approx(0.2) and tracker.best == pytest.approx(0.2)
    assert tracker.window_loss == pytest.approx(0.2)  # the NaN is left out of its window
    assert tracker.epoch_loss == pytest.approx((0.8 * 32 + 0.6 * 32 + 0.2 * 16) / 80)
    assert (tracker.nonfinite, tracker.epoch_nonfinite, tracker.last_nonfinite) == (1, 1, 3)
    assert tracker.history.version == 4 and [x for x, _ in tracker.history.nonfinite] == [3]
    assert tracker.flush() == []


def test_loss_tracker_state_dict_round_trip():
    tracker = LossTracker(History())
    tracker.record(torch.tensor(1.5), 1, 8.0)
    tracker.record(torch.tensor(float("inf")), 2, 8.0)
    tracker.close_window()
    tracker.record(torch.tensor(0.5), 3, 4.0)  # an open window's sums are state too
    with pytest.raises(RuntimeError, match="unread"):
        tracker.state_dict()
    tracker.flush()
    tracker.record_validation(0.75, {"acc": 0.5})
    tracker.record_validation(0.9, {"acc": 0.25})
    fresh = LossTracker(History())
    state = round_trip(tracker, fresh)
    assert state == {
        "last": 0.5, "window_loss": 1.5, "best": 0.5, "nonfinite": 1, "epoch_nonfinite": 1, "epoch_losses": 3,
        "last_nonfinite": 2,
        "window_sums": [2.0, 4.0], "epoch_sums": [14.0, 12.0], "val_loss": 0.9, "val_metrics": {"acc": 0.25},
        "best_val_loss": 0.75, "epoch_validated": True,
    }
    for unit in (tracker, fresh):
        unit.record(torch.tensor(1.0), 4, 4.0)
        unit.close_window()
        unit.flush()
    assert fresh.state_dict() == tracker.state_dict()
    assert fresh.window_loss == pytest.approx(0.75) and fresh.epoch_loss == pytest.approx(18.0 / 16.0)


# ----------------------------------------------------------------------------------------------
# speed
# ----------------------------------------------------------------------------------------------


def test_speed_counts_active_time_and_one_rate_for_speed_and_eta():
    speed = Speed(warmup_iterations=0)
    speed.eta.settle_seconds = 1.0
    speed.start(100.0)
    speed.update(0, 0, speed.training(100.0))
    speed.update(10, 320, speed.training(101.0))  # 10 it/s
    speed.pause(101.0)
    assert speed.active(105.0) == pytest.approx(1.0) and speed.elapsed(105.0) == pytest.approx(5.0)
    speed.resume(106.0)
    speed.update(30, 960, speed.training(107.0))  # 20 it/s over the one active second since
    assert speed.iterations_per_second == pytest.approx(15.0)  # 30 iterations over 2 active seconds
    assert speed.samples_per_second == pytest.approx(480.0)
    assert speed.eta.eta(30) == pytest.approx(2.0)  # the same rate: 30 iterations at 15 it/s


def test_speed_state_dict_round_trip():
    speed = Speed(warmup_iterations=1)
    speed.start(10.0)
    for i, now in enumerate([10.5, 11.0, 11.5, 12.0], start=1):
        speed.update(5 * i, 40 * i, speed.training(now))
    speed.pause(12.0)
    speed.resume(14.0)
    speed.pause(15.0)  # saved mid-pause
    speed.reset_eta(20)
    speed.update(25, 200, speed.training(15.5))
    fresh = Speed(warmup_iterations=1)
    state = round_trip(speed, fresh)
    assert state["pause_began"] == 15.0 and state["paused_total"] == 2.0
    assert state["eta"] == {"points": [[25, 200, 3.0]], "origin": 20, "measured": 0.0}
    for unit in (speed, fresh):
        unit.resume(16.0)
        unit.update(30, 240, unit.training(16.5))
    assert fresh.state_dict() == speed.state_dict()
    assert fresh.iterations_per_second == speed.iterations_per_second


# ----------------------------------------------------------------------------------------------
# planned totals
# ----------------------------------------------------------------------------------------------


def test_planned_totals_count_done_epochs_the_open_window_and_the_schedule():
    totals = PlannedTotals(80, 3)
    p = Progress()
    schedule = BatchSizeSchedule(8)
    totals.begin_epoch(10, 80, 0)
    p.start_epoch(1)
    assert totals.totals(p, 2, 2, schedule, 1) == (30, 15, 240, 5)
    p.record_iteration(8)  # window 1 of size 2 half full; the next windows will hold 3
    assert totals.totals(p, 2, 3, schedule, 1) == (30, 1 + 3 + 2 * 4, 240, 4)
    for window in (1, 3, 3, 2):  # the open window closes, then windows of 3 and the short one
        for _ in range(window):
            p.record_iteration(8)
        p.record_step()
    assert (p.iteration_in_epoch, p.steps_in_epoch) == (10, 4)
    totals.end_epoch(10, 4)
    totals.epochs_completed = 1
    assert totals.totals(p, 2, 3, schedule, 1) == (30, 4 + 2 * 4, 240, 4)


def test_planned_totals_state_dict_round_trip():
    totals = PlannedTotals(None, 4)
    totals.begin_epoch(None, None, 0)
    totals.end_epoch(7, 3)
    totals.epochs_completed = 1
    totals.begin_epoch(None, None, 53)
    fresh = PlannedTotals(None, 4)
    state = round_trip(totals, fresh)
    assert state == {"iterations_done": 7, "steps_done": 3, "epochs_completed": 1, "samples_at_epoch_start": 53,
                     "iterations_in_epoch": None, "epoch_samples": None, "epoch_done": False}
    assert fresh.totals(Progress(epoch=2), 1, 1, BatchSizeSchedule(8), 2) == (None, None, None, None)
    known = PlannedTotals(53, 3)
    known.begin_epoch(7, 53, 0)
    known.end_epoch(7, 2)
    p = Progress(epoch=1, iteration_in_epoch=7, steps_in_epoch=2, global_iteration=7, global_step=2, samples_seen=53)
    again = PlannedTotals(53, 3)
    round_trip(known, again)
    assert again.totals(p, 3, 4, BatchSizeSchedule(8), 1) == known.totals(p, 3, 4, BatchSizeSchedule(8), 1) == (
        21, 6, 159, 2)


# ----------------------------------------------------------------------------------------------
# boundaries
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_units_other_than_the_losses_do_not_import_torch():
    modules = ["core.schedule", "core.window", "core.run_control", "core.speed", "core.totals", "core.snapshot"]
    code = ("import sys; " + "; ".join(f"import trainmon.engine.{m}" for m in modules)
            + "; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "False"


def test_best_validation_loss_skips_non_finite_values():
    tracker = LossTracker(History())
    tracker.record_validation(float("nan"), {})  # a first NaN must not stay the best forever
    tracker.record_validation(0.8, {})
    tracker.record_validation(float("inf"), {})
    tracker.record_validation(0.9, {})
    assert tracker.best_val_loss == 0.8 and tracker.val_loss == 0.9
