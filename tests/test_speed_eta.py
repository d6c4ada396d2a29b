"""Speed and ETA by tables (issue 26 item 4): one rate for both, "estimating" until it settles, the ETA
of the plan as it stands (paused too), training time only, and a resumed run's own rate."""

from __future__ import annotations

import pytest

from trainmon.engine.core.progress import EtaEstimator
from trainmon.engine.core.speed import Speed


def feed(eta: EtaEstimator, rows: list[tuple[int, float]], per_iteration: int = 32) -> None:
    for iterations, seconds in rows:
        eta.update(iterations, iterations * per_iteration, seconds)


@pytest.mark.parametrize("rows, settled, eta_for_100", [
    ([(5, 0.0), (6, 0.1)], False, None),  # one iteration after warm-up: a guess, not shown
    ([(5, 0.0), (40, 1.0)], False, None),  # 1 s of training: still unsteady (data workers starting)
    ([(5, 0.0), (40, 1.0), (110, 3.0)], True, 100 / 35.0),  # 3 s: settled, 105 it in 3 s
    ([(5, 0.0), (6, 4.0)], False, None),  # 4 s but one iteration: not enough to say
    ([(5, 0.0), (6, 4.0), (7, 8.0)], True, 100 * 4.0),  # a slow run: 2 iterations in 8 s
])
def test_the_rate_settles_before_an_eta_is_shown(rows, settled, eta_for_100):
    eta = EtaEstimator(warmup_iterations=5)
    feed(eta, [(0, 0.0)] + rows)
    assert eta.settled is settled
    assert eta.eta(100) == (None if eta_for_100 is None else pytest.approx(eta_for_100))


@pytest.mark.parametrize("speeds", [
    [4.4, 251.4, 4.4, 251.4, 4.4, 251.4],  # publications that see 1 or 57 iterations: the jumps
    [36.0] * 6,
])
def test_speed_and_eta_agree_whatever_the_jitter(speeds):
    """it/s × ETA = iterations left, always: both come from the one rate."""
    eta = EtaEstimator(warmup_iterations=0)
    done, t = 0, 0.0
    eta.update(0, 0, 0.0)
    for rate in speeds:
        t += 1.0
        done += int(rate)
        eta.update(done, done * 32, t)
    left = 2558
    assert eta.iterations_per_second * eta.eta(left) == pytest.approx(left)
    assert eta.samples_per_second == pytest.approx(32 * eta.iterations_per_second)


@pytest.mark.parametrize("remaining, expected", [(9000, 250.0), (5656, 5656 / 36), (2312, 2312 / 36)])
def test_the_eta_follows_the_plan(remaining, expected):
    """Paused with a batch-size change pending: the planned iterations shrink and the ETA with them."""
    eta = EtaEstimator(warmup_iterations=0)
    feed(eta, [(0, 0.0), (108, 3.0), (216, 6.0)])
    assert eta.eta(remaining) == pytest.approx(expected)


def test_validation_checkpoints_and_pauses_are_left_out_and_counted_apart():
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731 - a clock for the table
    speed = Speed(warmup_iterations=0)
    speed.eta.settle_seconds = 1.0
    speed.start(0.0)
    rows = [  # (clock, iterations done, what happens after)
        (0.0, 0, None), (2.0, 20, "validation 60 s"), (62.0, 20, None), (64.0, 40, "checkpoint 5 s"),
        (69.0, 40, "pause 100 s"), (169.0, 40, None), (171.0, 60, None),
    ]
    for at, done, then in rows:
        now[0] = at
        speed.update(done, done * 32, speed.training(at))
        if then and then.startswith(("validation", "checkpoint")):
            kind, seconds = then.split()[0], float(then.split()[1])
            with speed.set_aside(kind, clock):
                now[0] += seconds
                speed.update(done, done * 32, speed.training(now[0]))  # a publication meanwhile
        elif then:
            speed.pause(at)
            now[0] = at + 100.0
            speed.resume(now[0])
    assert speed.iterations_per_second == pytest.approx(10.0)  # 60 iterations in 6 s of training
    assert speed.aside == {"validation": 60.0, "checkpoint": 5.0}
    assert speed.elapsed(171.0) - speed.active(171.0) == pytest.approx(100.0)
    assert speed.eta.eta(100) == pytest.approx(10.0)


def test_time_per_epoch_leaves_out_pauses():
    speed = Speed()
    speed.start(0.0)
    speed.epoch_ended(6.0)
    assert speed.epoch_seconds == pytest.approx(6.0)
    speed.pause(7.0)
    speed.resume(17.0)
    speed.epoch_ended(20.0)
    assert speed.epoch_seconds == pytest.approx(4.0)


def test_a_resumed_run_measures_only_its_own_rate():
    """After a resume (a new process, a new clock) the old session's points are gone: the first session
    ran 1000 it/s, this one 10 it/s, and the ETA is this one's."""
    speed = Speed(warmup_iterations=0)
    speed.eta.settle_seconds = 1.0
    speed.start(0.0)
    for second in range(11):
        speed.update(1000 * second, 32000 * second, speed.training(float(second)))
    assert speed.iterations_per_second == pytest.approx(1000.0)
    speed.restart(5000.0, active=10.0, global_iteration=10_000)  # another process's clock
    assert speed.iterations_per_second is None and speed.eta.eta(100) is None and speed.epoch_seconds is None
    for second in range(1, 5):
        speed.update(10_000 + 10 * second, 320_000 + 320 * second, speed.training(5000.0 + second))
    assert speed.iterations_per_second == pytest.approx(10.0)
    assert speed.eta.eta(100) == pytest.approx(10.0)
    assert speed.elapsed(5004.0) == pytest.approx(14.0)
