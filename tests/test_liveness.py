"""Liveness and where the time goes, by tables: the phase a heartbeat names, the stall threshold, the
`input_bound` / `throughput_drop` rules, the lines and words that show them; then a real track() loop in
this process whose loader stalls, and one that waits for its batches."""

from __future__ import annotations

import time

import pytest
import torch

import trainmon
from trainmon.engine.core import messages as msg
from trainmon.engine.core.health import ThroughputWatch, input_bound_message, is_input_bound
from trainmon.engine.core.liveness import (
    IN_CODE,
    OUTSIDE,
    PAUSED,
    SAVING,
    STALLED,
    STARTING,
    TRAINING,
    VALIDATING,
    WAITING,
    IterationPace,
    Liveness,
    LivenessChanged,
    aged,
    phase_of,
    phase_text,
    short_duration,
    stall_threshold,
    status_word,
)
from trainmon.engine.core.report import event_line
from trainmon.engine.record.event_log import read_events
from trainmon.tui.widgets.liveness_text import liveness_groups


@pytest.mark.parametrize("stall_after, slowest, expected", [
    (2.0, None, 2.0),  # the user's choice wins
    (2.0, 30.0, 2.0),
    (None, None, 300.0),  # before the first iteration: start-up may be long
    (None, 0.01, 30.0),  # fast iterations: the floor (a minute-long hang is told while it lasts)
    (None, 6.5, 65.0),  # slow ones: 10 × the slowest
])
def test_stall_threshold(stall_after, slowest, expected):
    assert stall_threshold(stall_after, slowest) == expected


@pytest.mark.parametrize("stall_after, slowest, expected", [
    (2.0, 0.01, 2.0),  # the user's choice holds outside the batches loop too
    (None, 0.01, 600.0),  # a tracked script's validation between epochs may take minutes
    (None, 90.0, 900.0),
])
def test_stall_threshold_outside_the_batches_loop(stall_after, slowest, expected):
    assert stall_threshold(stall_after, slowest, outside=True) == expected


# now=100; stamps in seconds on the same clock; stall_after=20 unless said
@pytest.mark.parametrize("kwargs, expected", [
    (dict(in_loop=True, asked=99.5, handed=99.6, last_iteration=99.5), (TRAINING, 99.5)),
    (dict(in_loop=True, asked=95.0, handed=90.0, last_iteration=95.0), (WAITING, 95.0)),  # inside next()
    (dict(in_loop=True, asked=80.0, handed=70.0, last_iteration=80.0), (STALLED, 80.0)),  # a hung loader
    (dict(in_loop=True, asked=90.0, handed=90.5, last_iteration=90.0), (IN_CODE, 90.5)),  # a long iteration
    (dict(in_loop=True, asked=90.0, handed=90.5, last_iteration=90.0, slowest=4.0), (TRAINING, 90.0)),  # its usual
    (dict(in_loop=True, asked=70.0, handed=70.1, last_iteration=70.0), (STALLED, 70.0)),
    (dict(in_loop=False, left=95.0, last_iteration=94.0), (OUTSIDE, 95.0)),  # a tracked loop's validation
    (dict(in_loop=False, left=75.0, last_iteration=74.0), (STALLED, 74.0)),  # ... that lasts
    (dict(in_loop=False, left=75.0, last_iteration=74.0, outside_after=600.0), (OUTSIDE, 75.0)),  # its own limit
    (dict(in_loop=True, asked=70.0, handed=70.1, last_iteration=70.0, outside_after=600.0), (STALLED, 70.0)),
    (dict(in_loop=True, asked=50.0, handed=10.0, last_iteration=50.0, paused=True), (PAUSED, 100.0)),
    (dict(in_loop=False, left=10.0, last_iteration=10.0, validating=True), (VALIDATING, 100.0)),  # never a stall
    (dict(in_loop=False, left=10.0, last_iteration=10.0, saving=True), (SAVING, 100.0)),
    (dict(in_loop=False, started=5.0, last_iteration=None, starting=True), (STARTING, 5.0)),  # set-up: no stall
    (dict(in_loop=True, asked=99.0, handed=0.0, last_iteration=None, started=90.0), (WAITING, 99.0)),  # 1st batch
])
def test_phase_of(kwargs, expected):
    base = dict(asked=0.0, handed=0.0, left=0.0, started=0.0, slowest=None, stall_after=20.0)
    assert phase_of(100.0, **{**base, **kwargs}) == expected


def test_iteration_pace_keeps_the_slowest_recent_span():
    pace = IterationPace()
    assert pace.slowest is None
    pace.add(10, 1.0)
    pace.add(1, 0.5)
    pace.add(0, 9.0)  # no iteration: not a span
    assert pace.slowest == 0.5
    for _ in range(IterationPace.KEEP):
        pace.add(10, 0.1)
    assert pace.slowest == pytest.approx(0.01)  # the slow span is no longer recent


@pytest.mark.parametrize("status, phase, seconds, word", [
    ("running", STALLED, 252.0, "stalled 4m12s"),
    ("running", WAITING, 12.0, "running (waiting 12s)"),
    ("running", IN_CODE, 3.0, "running"),  # too short to say
    ("running", TRAINING, 400.0, "running"),
    ("starting", STALLED, 12.0, "stalled 12s"),  # stalled before its first fold: the snapshot still says starting
    ("starting", WAITING, 20.0, "starting"),
    ("paused", STALLED, 252.0, "paused"),  # only a running run stalls
    ("lost", STALLED, 252.0, "lost"),
    ("running", None, None, "running"),  # a run recorded before liveness existed
])
def test_status_word(status, phase, seconds, word):
    assert status_word(status, phase, seconds) == word


def test_a_recorded_liveness_ages_while_its_run_runs():
    live = Liveness(phase=STALLED, phase_seconds=10.0, iteration_age=12.0, beat=1000.0)
    assert aged(live, "running", 1005.0) == (STALLED, 15.0, 17.0)
    assert aged(live, "finished", 1005.0) == ("finished", None, 17.0)  # an ended run has no phase: its status
    assert aged(live, "lost", 1005.0) == ("lost", None, 17.0)
    assert aged(None, "running", 1005.0) == (None, None, None)


@pytest.mark.parametrize("live, text", [
    (Liveness(TRAINING, 0.2), "training"),
    (Liveness(IN_CODE, 252.0), "in your code for 4m12s (no batch asked for)"),
    (Liveness(WAITING, 12.0), "waiting for the next batch for 12s"),
    (Liveness(STALLED, 3725.0), "stalled 1h02m (no iteration)"),
])
def test_phase_text(live, text):
    assert phase_text(live) == text


def test_short_duration():
    assert [short_duration(s) for s in (0, 59.9, 60, 252, 3600, -1)] == ["0s", "59s", "1m00s", "4m12s", "1h00m", "0s"]


@pytest.mark.parametrize("wait, loop, fraction, bound", [
    (6.2, 10.0, 0.5, True), (4.9, 10.0, 0.5, False), (0.9, 0.95, 0.5, None),  # under a second: not judged
    (5.0, 10.0, 0.5, True),
])
def test_input_bound_rule(wait, loop, fraction, bound):
    assert is_input_bound(wait, loop, fraction) is bound


def test_input_bound_message():
    assert input_bound_message(0.62) == ("input-bound: 62 % of the time waiting for the next batch — more "
                                         "DataLoader workers, pin_memory, or a faster dataset")


@pytest.mark.parametrize("minutes, dropped", [
    # samples in 60 s per minute → the minute whose rate fell below half the typical one
    ([100, 1000, 1000, 1000, 400, 1000], [None, None, None, None, 1000.0, None]),  # warm-up minute left out
    ([1000, 1000, 400], [None, None, None]),  # too few minutes known
    ([1000, 1000, 1000, 1000, 600], [None, None, None, None, None]),  # 60 %: above half
])
def test_throughput_drop_rule(minutes, dropped):
    watch = ThroughputWatch()
    got = [watch.minute(samples, 60.0, 0.5) for samples in minutes]
    assert [None if g is None else pytest.approx(g * 60.0) for g in got] == dropped


def test_throughput_watch_starts_over_at_a_batch_size_change():
    watch = ThroughputWatch()
    for _ in range(5):
        watch.minute(1000, 60.0, 0.5)
    watch.reset()
    assert [watch.minute(s, 60.0, 0.5) for s in (100, 300, 300, 300, 100)] == [None, None, None, None, 5.0]


def test_lines():
    assert event_line(LivenessChanged(STALLED, WAITING, 2.1, 1, 25)) == "stalled after=2.1s epoch=1 global_iteration=25"
    assert event_line(LivenessChanged(TRAINING, STALLED, 6.04, 1, 27)) == (
        "moving phase=training stalled_for=6.0s epoch=1 global_iteration=27")
    ended = msg.EpochEnded(1, 2, 10, 10, 10, 40, 0.5, None, {}, 4, 1, 0.1, 1.0, 10, 10, data_wait=0.6243,
                           monitor=0.00412)
    assert event_line(ended).endswith(" nonfinite=0 data_wait=0.62 monitor=0.004")
    assert "data_wait" not in event_line(msg.EpochEnded(1, 2, 10, 10, 10, 40, 0.5, None, {}, 4, 1, 0.1, 1.0, 10, 10))


def test_status_line_groups():
    stalled = Liveness(STALLED, 252.0, iteration_age=252.0, data_wait=0.62, monitor=0.004)
    assert liveness_groups(stalled, True) == ["[bold red]stalled 4m12s (no iteration)[/]", "[dim]last it[/] 4m12s [dim]ago[/]",
                                              "[dim]data wait[/] 62%", "[dim]monitor[/] 0.4%"]
    assert liveness_groups(Liveness(TRAINING, 0.1, iteration_age=0.04), True) == ["[dim]last it[/] 0.0s [dim]ago[/]"]
    assert liveness_groups(stalled, False) == [] and liveness_groups(None, True) == []


class SleepyData(torch.utils.data.Dataset):
    """16 samples of 4 features; item `stall_at` sleeps `stall` seconds, every item `each` seconds."""

    def __init__(self, stall_at: int = -1, stall: float = 0.0, each: float = 0.0) -> None:
        self.stall_at, self.stall, self.each = stall_at, stall, each

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int):
        if i == self.stall_at:
            time.sleep(self.stall)
        time.sleep(self.each)
        return torch.full((4,), float(i)), torch.tensor(i % 2)


def _train(tmp_path, dataset, epochs: int = 1):
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    run = trainmon.track(optimizer, name="sleepy", quiet=True, run_dir=str(tmp_path / "run"))
    loader = torch.utils.data.DataLoader(dataset, batch_size=2)
    for _ in run.epochs(epochs):
        for x, y in run.batches(loader):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            run.log(loss)
    return [e for _, e in read_events(tmp_path / "run")]


def test_a_stalled_loader_raises_stall_while_it_lasts_and_clears_after(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINMON_ALERTS", '{"stall_after": 0.6, "off": ["input_bound"]}')
    events = _train(tmp_path, SleepyData(stall_at=8, stall=2.0))
    said = [(type(e).__name__, getattr(e, "kind", getattr(e, "phase", None)), e.global_iteration) for e in events
            if isinstance(e, (msg.Alert, LivenessChanged))]
    # batch 5 (items 8, 9) is the one the loader sleeps in: 4 iterations done
    assert said[:2] == [("LivenessChanged", STALLED, 4), ("Alert", "stall", 4)] and len(said) == 3
    moved = [e for e in events if isinstance(e, LivenessChanged)][-1]  # told by the next beat, or the run's end
    # the beat after the stall may find the loop in an iteration, outside its batches, or fetching the next one
    # (a loaded box can hold the loop's thread inside the loader's next batch for a beat): any phase but stalled
    assert moved.previous == STALLED and moved.phase in (TRAINING, OUTSIDE, WAITING) and moved.global_iteration >= 5
    stall = [e for e in events if isinstance(e, msg.Alert)][0]
    assert stall.message.startswith("no iteration completed for 0s (stall_after 0.6 s): the loop waits for its next "
                                    "batch") or stall.message.startswith("no iteration completed for 1s")
    assert 1.0 <= moved.seconds <= 4.0  # the stall's length: the sleep less the threshold, give or take beats


def test_a_loop_waiting_for_its_batches_is_input_bound(tmp_path):
    events = _train(tmp_path, SleepyData(each=0.08))  # 8 batches of 2 items: ~1.3 s of loading
    ended = [e for e in events if isinstance(e, msg.EpochEnded)][0]
    assert ended.data_wait > 0.7 and 0 <= ended.monitor < 0.05  # the rest: the first forward pass, mostly
    alerts = [e for e in events if isinstance(e, msg.Alert)]
    assert [a.kind for a in alerts] == ["input_bound"]
    assert alerts[0].message.startswith(f"input-bound: {round(100 * ended.data_wait)} % of the time waiting")


def test_a_framework_loop_reporting_iterations_is_training_then_outside():
    from trainmon.engine.run.tracker import Tracker

    tracker = Tracker("callbacks", epochs=1, batch_size=2, session=False, telemetry=False)
    assert tracker.health.liveness().iteration_age is None
    tracker.begin_epoch(1, iterations=3)
    for _ in range(3):
        tracker.iteration_done(samples=2, loss=0.5)
    live = tracker.health.liveness()
    assert live.phase == TRAINING and live.iteration_age < 1.0 and live.stall_after == 30.0  # the floor
    tracker.end_epoch()
    assert tracker.health.liveness().phase == OUTSIDE


def test_iterations_no_fold_has_timed_yet_hold_the_floor_not_the_start_up_wait():
    """A loader that hangs in the loop's first tenth of a second (no publication has timed an iteration yet):
    the run is past its start-up, so the 30 s floor holds, not the 300 s start-up wait."""
    from trainmon.engine.run.tracker import Tracker

    tracker = Tracker("early hang", epochs=1, batch_size=2, session=False, telemetry=False)
    hot = tracker.hot_begin((2, 64))
    hot.n = 7  # seven iterations done, none folded yet
    assert tracker.health.pace.slowest is None
    assert tracker.health.liveness().stall_after == 30.0
    hot.n = 0
    tracker.hot_end(False)


class SlowRows(torch.utils.data.Dataset):
    """Rows of a regression set; row `stall_at` sleeps `stall` seconds, every row `each` seconds."""

    def __init__(self, x, y, stall_at: int = -1, stall: float = 0.0, each: float = 0.0) -> None:
        self.x, self.y, self.stall_at, self.stall, self.each = x, y, stall_at, stall, each

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        if i == self.stall_at:
            time.sleep(self.stall)
        time.sleep(self.each)
        return self.x[i], self.y[i]


def test_the_engine_times_its_batches_and_a_long_validation_is_no_stall(monkeypatch):
    from tests.conftest import collect, linear_job, regression_data
    from trainmon.engine.control.channel import Channel
    from trainmon.engine.jobs.job import RunConfig
    from trainmon.engine.run.trainer import Trainer

    monkeypatch.setenv("TRAINMON_ALERTS", '{"stall_after": 0.6, "off": ["input_bound"]}')
    x, y = regression_data(24)
    job = linear_job(val_dataset=SlowRows(x[:8], y[:8], stall_at=0, stall=1.6))
    job.train_dataset = SlowRows(x, y, each=0.03)
    snaps: list = []
    channel = Channel(listener=lambda item: snaps.append(item) if isinstance(item, msg.Snapshot) else None)
    result = Trainer(job, RunConfig.for_job(job), channel).run()
    assert isinstance(result, msg.Finished)
    _, events = collect(channel)
    ended = [e for e in events if isinstance(e, msg.EpochEnded)][0]
    assert ended.data_wait > 0.7 and 0 <= ended.monitor < 0.2  # 24 rows × 30 ms of loading, a tiny model
    assert not [e for e in events if isinstance(e, (msg.Alert, LivenessChanged))]  # validating is a phase
    phases = [s.liveness.phase for s in snaps if s.liveness is not None]
    assert "validating" in phases and STALLED not in phases  # the heartbeat said so, while the loop was silent


def test_minutes_of_loop_time_judge_throughput_and_input_bound(monkeypatch):
    from trainmon.engine.control.channel import Channel
    from trainmon.engine.run import loop_health
    from trainmon.engine.run.tracker import Tracker

    now = [0.0]
    monkeypatch.setattr(loop_health, "clock", lambda: now[0])
    channel = Channel()
    tracker = Tracker("minutes", epochs=1, batch_size=10, session=False, telemetry=False, channel=channel)
    health = tracker.health
    health.loop_began()
    said = []
    # (samples, seconds waiting) per minute of loop time, in 6 spans of 10 s each
    for samples, wait in ((6000, 0), (6000, 0), (6000, 0), (6000, 0), (1200, 0), (6000, 40), (6000, 0)):
        for _ in range(6):
            now[0] += 10.0
            health.hot.wait = wait / 6
            health.span(samples // 60, samples // 6)
        said.append([(e.kind, e.message) for e in channel.poll().events if isinstance(e, msg.Alert)])
    assert said[:4] == [[], [], [], []]  # warm-up, then 3 healthy minutes
    assert said[4] == [("throughput_drop", "throughput dropped: 20 samples/s over the last minute, against a typical "
                                           "100 samples/s (20 %)")]
    assert said[5] == [("input_bound", "input-bound: 67 % of the time waiting for the next batch — more DataLoader "
                                       "workers, pin_memory, or a faster dataset")]
    assert said[6] == [] and not health.core.alerts.active("input_bound")  # cleared by a healthy minute
    assert not health.core.alerts.active("throughput_drop")


def test_a_minute_long_stall_judged_by_its_window_is_not_input_bound_at_the_epoch_end_either(monkeypatch):
    """A loader asleep 60 s mid-epoch: the window it closes is excused (the `stall` alert said it), and so is the
    epoch, whose end judges the epoch's loop time (96 % waiting) right after."""
    from trainmon.engine.control.channel import Channel
    from trainmon.engine.run import loop_health
    from trainmon.engine.run.tracker import Tracker

    now = [0.0]
    monkeypatch.setattr(loop_health, "clock", lambda: now[0])
    channel = Channel()
    health = Tracker("asleep", epochs=1, batch_size=10, session=False, telemetry=False, channel=channel).health
    health.loop_began()
    now[0] += 1.0
    health.span(20, 200)
    now[0] += 61.0
    health.saw_stall()  # what the heartbeat's liveness() tells while the loader sleeps
    health.hot.wait = 60.0
    health.span(1, 10)  # 62 s of loop time: the window closes, judged while stalled
    now[0] += 1.0
    health.span(30, 300)
    data_wait, _ = health.epoch_ended()
    assert data_wait > 0.9
    assert not [e for e in channel.poll().events if isinstance(e, msg.Alert)]
