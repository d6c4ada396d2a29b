"""The arithmetic by tables (no torch here, on purpose)."""

import math

import pytest

from trainmon.engine.core.arithmetic import (
    MAX_BATCH_SIZE,
    MAX_SAMPLES,
    BatchSizeSchedule,
    PlanError,
    batch_size_at,
    check_whole,
    effective_batch_size,
    epoch_counts,
    is_whole,
    iterations_per_epoch,
    last_batch_size,
    micro_batch_weights,
    optimizer_steps_per_epoch,
    steps_left,
    weighted_mean,
    window_counts,
    window_position,
    window_samples,
    window_sizes,
)
from trainmon.engine.core.plan import plan_epoch, plan_run, scheduled_counts
from trainmon.engine.core.progress import EtaEstimator, Progress


@pytest.mark.parametrize(
    "m, b, drop_last, iterations, last, samples",
    [
        (1000, 64, False, 16, 40, 1000),  # not 1000 // 64 = 15
        (1000, 64, True, 15, 64, 960),
        (1437, 32, False, 45, 29, 1437),
        (1437, 32, True, 44, 32, 1408),
        (1024, 64, False, 16, 64, 1024),
        (1024, 64, True, 16, 64, 1024),
        (1, 64, False, 1, 1, 1),
        (0, 64, False, 0, 0, 0),
        (63, 64, True, 0, 0, 0),
        (64, 1, False, 64, 1, 64),
        (None, 64, False, None, None, None),
    ],
)
def test_epoch_counts(m, b, drop_last, iterations, last, samples):
    assert iterations_per_epoch(m, b, drop_last) == iterations
    assert last_batch_size(m, b, drop_last) == last
    if m is not None and m >= b or not drop_last:
        if iterations:
            plan = plan_epoch(1, m, b, 1, drop_last)
            assert (plan.iterations, plan.last_batch_size, plan.samples) == (iterations, last, samples)


@pytest.mark.parametrize(
    "n, k, windows",
    [
        (16, 4, [4, 4, 4, 4]),
        (7, 4, [4, 3]),
        (16, 3, [3, 3, 3, 3, 3, 1]),
        (3, 8, [3]),  # k larger than the epoch: one window, one step
        (5, 1, [1, 1, 1, 1, 1]),
        (0, 4, []),
    ],
)
def test_window_sizes_and_steps(n, k, windows):
    assert window_sizes(n, k) == windows
    assert optimizer_steps_per_epoch(n, k) == len(windows) == math.ceil(n / k)
    assert sum(windows) == n
    full, last = window_counts(n, k)
    assert full == windows.count(k) and last == (windows[-1] if windows else 0)


def test_huge_epoch_counts_windows_without_listing_them():
    # 10**11 iterations at k=3: 33,333,333,333 full windows and a last one of 1 — no list of them.
    plan = plan_epoch(1, 10**11, 1, 3)
    assert plan.window_sizes is None
    assert (plan.full_windows, plan.last_window_size) == (33_333_333_333, 1)
    assert plan.optimizer_steps == 33_333_333_334 and plan.iterations == 10**11
    at_limit = plan_epoch(1, 10_000, 1, 1)  # 10,000 windows are still listed, 10,001 are not
    assert at_limit.window_sizes == [1] * 10_000 and at_limit.full_windows == 10_000
    over = plan_epoch(1, 10_001, 1, 1)
    assert over.window_sizes is None and (over.full_windows, over.last_window_size) == (10_001, 1)
    empty = plan_epoch(1, 0, 4, 2)
    assert (empty.window_sizes, empty.full_windows, empty.last_window_size) == ([], 0, 0)


def test_samples_up_to_2_to_the_53():
    # 2**53 = 4,194,304 · (2**31 - 1) + 4,194,304: one more, short batch of 4,194,304 samples
    plan = plan_epoch(1, MAX_SAMPLES, MAX_BATCH_SIZE, 1)
    assert (plan.iterations, plan.last_batch_size, plan.samples) == (4_194_305, 4_194_304, 2**53)


def test_plan_m1000_b64_k4():
    plan = plan_epoch(1, 1000, 64, 4)
    assert plan.window_sizes == [4, 4, 4, 4]
    assert (plan.full_windows, plan.last_window_size) == (4, 4)
    assert plan.optimizer_steps == 4
    assert plan.effective_batch_size == 256


def test_short_window_weights_by_samples():
    # 7 micro-batches, k=4: windows [4, 3]; the last batch of 53 samples at b=8 holds 5.
    m, b, k = 53, 8, 4
    n = iterations_per_epoch(m, b)
    assert n == 7 and window_sizes(n, k) == [4, 3]
    sizes = [batch_size_at(i, m, b) for i in range(n)]
    assert sizes == [8, 8, 8, 8, 8, 8, 5]
    short = sizes[4:]
    assert micro_batch_weights(short) == pytest.approx([8 / 21, 8 / 21, 5 / 21])
    assert micro_batch_weights(sizes[:4]) == [0.25] * 4


def test_k_larger_than_epoch_gives_one_step_per_epoch():
    run = plan_run(100, 32, accum=10, epochs=3)
    assert [e.optimizer_steps for e in run.epochs] == [1, 1, 1]
    assert [e.window_sizes for e in run.epochs] == [[4], [4], [4]]
    assert run.total_optimizer_steps == 3


def test_geometric_schedule_samples_from_real_batch_sizes():
    run = plan_run(1000, 64, accum=1, epochs=4, batch_growth=2.0, max_batch_size=300)
    assert [e.batch_size for e in run.epochs] == [64, 128, 256, 300]
    assert [e.iterations for e in run.epochs] == [16, 8, 4, 4]
    assert [e.last_batch_size for e in run.epochs] == [40, 104, 232, 100]
    assert run.total_iterations == 32
    assert run.total_samples == 4000  # summed from real batches, not iterations · b
    run_dl = plan_run(1000, 64, epochs=3, drop_last=True, batch_growth=2.0)
    assert [e.samples for e in run_dl.epochs] == [960, 896, 768]
    assert run_dl.total_samples == 2624


@pytest.mark.parametrize(
    "initial, growth, cap, expected",
    [(32, 1.0, None, [32, 32, 32]), (10, 1.5, None, [10, 15, 22]), (8, 2.0, 20, [8, 16, 20]), (4, 0.5, None, [4, 2, 1])],
)
def test_schedule(initial, growth, cap, expected):
    s = BatchSizeSchedule(initial, growth, cap)
    assert [s.at(t) for t in range(3)] == expected


def test_schedule_never_overflows():
    assert BatchSizeSchedule(1, 2.0).at(30) == 2**30
    assert BatchSizeSchedule(2**30 - 1, 2.0).at(1) == 2**31 - 2
    assert BatchSizeSchedule(MAX_BATCH_SIZE).at(10**400) == MAX_BATCH_SIZE  # constant: no power taken
    assert BatchSizeSchedule(4, 0.5).at(10**400) == 1  # shrinking: at least 1
    assert BatchSizeSchedule(64, 1e308, 1000).at(1) == 1000  # capped: the cap, never inf
    assert BatchSizeSchedule(64, 10.0, MAX_BATCH_SIZE).at(399) == MAX_BATCH_SIZE
    assert BatchSizeSchedule(64, 10.0, 10**6).at(10**400) == 10**6
    for schedule, epoch_index, first_bad_epoch in [
        (BatchSizeSchedule(1, 2.0), 31, 32),  # 2**31 is one past the limit
        (BatchSizeSchedule(64, 1e308), 1, 2),
        (BatchSizeSchedule(64, 10.0), 399, 9),  # 64 · 10^8 = 6.4e9 is the first too large
        (BatchSizeSchedule(64, 10.0), 10**400, 9),
    ]:
        with pytest.raises(PlanError) as info:
            schedule.at(epoch_index)
        message = str(info.value)
        assert f"above 2147483647 at epoch {first_bad_epoch} " in message and "--max-batch-size" in message
        assert "\n" not in message


def test_growing_plan_past_the_batch_size_limit_names_the_epoch():
    with pytest.raises(PlanError, match=r"at epoch 9 \(from 64\); cap it with --max-batch-size"):
        plan_run(1000, 64, epochs=400, batch_growth=10.0)
    run = plan_run(1000, 64, epochs=12, batch_growth=10.0, max_batch_size=MAX_BATCH_SIZE)
    assert [e.batch_size for e in run.epochs][-5:] == [640_000_000] + [MAX_BATCH_SIZE] * 4
    assert [e.iterations for e in run.epochs][-1] == 1


def test_run_totals_match_trainmon_plan_example():
    run = plan_run(1000, 64, accum=4, epochs=2)
    d = run.to_dict()
    assert d["total_iterations"] == 32
    assert d["total_optimizer_steps"] == 8
    assert d["total_samples"] == 2000
    assert d["effective_batch_size"] == 256
    assert d["epochs"] == [{  # the two identical epochs are one entry
        "epoch": 1, "last_epoch": 2, "batch_size": 64, "accum": 4, "iterations": 16, "last_batch_size": 40,
        "window_sizes": [4, 4, 4, 4], "full_windows": 4, "last_window_size": 4, "optimizer_steps": 4,
        "samples": 1000, "effective_batch_size": 256,
    }]


def test_unknown_length_gives_none_totals():
    run = plan_run(None, 64, accum=4, epochs=3)
    assert run.total_iterations is None and run.total_samples is None and run.total_optimizer_steps is None
    assert run.epochs[0].window_sizes is None
    assert (run.epochs[0].full_windows, run.epochs[0].last_window_size) == (None, None)
    assert run.effective_batch_size == 256


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(samples=1000, batch_size=0), "batch size"),
        (dict(samples=1000, batch_size=64, accum=0), "accumulation steps"),
        (dict(samples=-1, batch_size=64), "samples"),
        (dict(samples=10, batch_size=64, drop_last=True), "drop_last"),
        (dict(samples=10, batch_size=4, epochs=-1), "epochs"),
        (dict(samples=10, batch_size=4, batch_growth=0), "growth"),
        (dict(samples=10, batch_size=4, max_batch_size=0), "max batch size"),
        (dict(samples=10, batch_size=2**31), "batch size must be at most 2147483647, got 2147483648"),
        (dict(samples=10, batch_size=2**63 - 1), "batch size must be at most 2147483647"),
        (dict(samples=10, batch_size=4, max_batch_size=2**31), "max batch size must be at most 2147483647"),
        (dict(samples=1000, batch_size=64, max_batch_size=10), "max batch size 10 is below the batch size 64"),
        (dict(samples=2**53 + 1, batch_size=1), "samples must be at most 9007199254740992"),
        (dict(samples=1000, batch_size=64, epochs=2, batch_growth=1e308), "at epoch 2"),
    ],
)
def test_invalid_plans_raise_one_line(kwargs, fragment):
    with pytest.raises(PlanError) as info:
        plan_run(**kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_effective_batch_size_and_window_position():
    assert effective_batch_size(32, 4) == 128
    assert effective_batch_size(32, 4, world_size=8) == 1024
    assert window_position(0, 7, 4) == (0, 0, 4)
    assert window_position(5, 7, 4) == (1, 1, 3)
    assert window_position(9, None, 4) == (2, 1, 4)


def test_weighted_mean_is_sample_weighted_and_skips_nonfinite():
    assert weighted_mean([0.8, 0.6], [32, 32]) == pytest.approx(0.7)
    assert weighted_mean([1.0, 2.0], [30, 10]) == pytest.approx(1.25)
    assert weighted_mean([1.0, float("nan"), 3.0], [1, 5, 1]) == pytest.approx(2.0)
    assert weighted_mean([float("inf")], [1]) is None


def test_progress_counters_with_changing_batch_size():
    p = Progress()
    p.start_epoch(1)
    for size in [64] * 15 + [40]:
        p.record_iteration(size)
        if p.window_position == 4:
            p.record_step()
    p.start_epoch(2)
    for i, size in enumerate([128] * 7 + [104]):
        p.record_iteration(size)
        if p.window_position == 3 or i == 7:
            p.record_step()
    assert p.state_dict() == {
        "epoch": 2, "iteration_in_epoch": 8, "window_position": 0, "window_samples": 0, "steps_in_epoch": 3,
        "global_iteration": 24, "global_step": 7, "samples_seen": 2000, "steps_skipped": 0,
    }
    q = Progress()
    q.load_state_dict(p.state_dict())
    assert q == p


def test_eta_leaves_out_warmup_and_pauses():
    eta = EtaEstimator(warmup_iterations=2, settle_seconds=5.0)
    eta.update(1, 100, 10.0)  # warm-up: ignored, however slow
    assert eta.eta(1000) is None
    eta.update(2, 200, 10.0)
    eta.update(12, 1200, 20.0)  # 10 iterations, 1000 samples in 10 seconds of training
    assert eta.samples_per_second == pytest.approx(100.0) and eta.iterations_per_second == pytest.approx(1.0)
    assert eta.eta(5) == pytest.approx(5.0)
    assert eta.eta(None) is None


def test_eta_follows_a_change_of_speed_and_resets():
    eta = EtaEstimator(warmup_iterations=0, window_seconds=10.0, settle_seconds=1.0)
    for second in range(0, 31):  # 100 samples/s for 30 s
        eta.update(second * 10, 100 * second, float(second))
    for second in range(31, 61):  # then 10 samples/s
        eta.update(300 + (second - 30), 3000 + 10 * (second - 30), float(second))
    assert eta.samples_per_second == pytest.approx(10.0, rel=0.05)  # the last 10 s only
    eta.reset(330)
    assert eta.eta(100) is None
    eta.update(331, 4000, 70.0)
    eta.update(332, 4050, 75.0)
    assert eta.samples_per_second == pytest.approx(10.0)


@pytest.mark.parametrize(
    "value, minimum, ok",
    [(1, 1, True), (0, 1, False), (0, 0, True), (-1, 0, False), (True, 1, False), (False, 0, False),
     (1.0, 1, False), ("3", 1, False), (None, 0, False), (2**63, 1, True)],
)
def test_is_whole_refuses_bools_floats_and_small_values(value, minimum, ok):
    assert is_whole(value, minimum) is ok


def test_check_whole_names_the_value_and_the_minimum():
    with pytest.raises(PlanError, match=r"^epochs must be a whole number >= 0, got -2$"):
        check_whole("epochs", -2, 0)
    with pytest.raises(PlanError, match=r"^batch size must be a whole number >= 1, got True$"):
        check_whole("batch size", True)
    check_whole("accumulation steps", 4)


@pytest.mark.parametrize(
    "start, size, m, b, drop_last, samples",
    [
        (0, 4, 53, 8, False, 32),
        (4, 3, 53, 8, False, 21),  # holds the last batch of 5
        (6, 1, 53, 8, False, 5),
        (4, 2, 53, 8, True, 16),  # drop_last: 6 full batches, the last window holds two
        (0, 4, None, 8, False, 32),  # unknown length: assumed full
        (0, 0, 53, 8, False, 0),
    ],
)
def test_window_samples_counts_the_short_last_batch(start, size, m, b, drop_last, samples):
    assert window_samples(start, size, m, b, drop_last) == samples
    if m is not None:
        n = iterations_per_epoch(m, b, drop_last)
        assert samples == sum(batch_size_at(j, m, b, drop_last) for j in range(start, min(start + size, n))) + \
            b * max(0, start + size - n)


@pytest.mark.parametrize(
    "m, b, k, drop_last, counts",
    [(1437, 32, 4, False, (45, 12, 1437)), (1437, 32, 4, True, (44, 11, 1408)), (53, 8, 50, False, (7, 1, 53)),
     (0, 8, 2, False, (0, 0, 0))],
)
def test_epoch_counts_with_windows(m, b, k, drop_last, counts):
    assert epoch_counts(m, b, k, drop_last) == counts


@pytest.mark.parametrize(
    "left, k, open_left, steps",
    [
        (10, 3, None, 4),  # windows 3, 3, 3, 1
        (0, 3, None, 0),
        (9, 3, 1, 1 + 3),  # the open window takes 1 more, then 8 in windows of 3
        (8, 3, 0, 1 + 3),  # the open window is full: its own step, then 8 in windows of 3
        (1, 4, 3, 1),  # the epoch ends inside the open window: one (short) step
        (0, 4, 2, 1),
    ],
)
def test_steps_left(left, k, open_left, steps):
    assert steps_left(left, k, open_left) == steps


@pytest.mark.parametrize(
    "b0, g, cap, first, epochs",
    [(32, 1.0, None, 0, 5), (8, 2.0, 100, 0, 6), (8, 2.0, 100, 2, 3), (1, 1.5, None, 0, 6), (100, 0.5, None, 0, 9),
     (10, 1.05, None, 0, 4)],
)
def test_scheduled_counts_match_the_run_plan(b0, g, cap, first, epochs):
    schedule = BatchSizeSchedule(b0, g, cap)
    plan = plan_run(1000, b0, 3, first + epochs, batch_growth=g, max_batch_size=cap)
    later = plan.epochs[first:]
    assert scheduled_counts(1000, schedule, first, epochs, 3) == (
        sum(e.iterations for e in later), sum(e.optimizer_steps for e in later), sum(e.samples for e in later))


def test_constant_from():
    assert BatchSizeSchedule(32).constant_from(0)
    growing = BatchSizeSchedule(8, 2.0, 100)
    assert [growing.constant_from(t) for t in range(6)] == [False, False, False, False, True, True]  # 8..64, 100
    assert not BatchSizeSchedule(1, 1.5).constant_from(1)  # b stays 1 for two epochs, then grows to 2
    shrinking = BatchSizeSchedule(4, 0.5)
    assert [shrinking.constant_from(t) for t in range(4)] == [False, False, True, True]


def test_scheduled_counts_multiply_out_a_long_constant_run():
    assert scheduled_counts(80, BatchSizeSchedule(8), 1, 99_999, 1) == (999_990, 999_990, 7_999_920)


def test_eta_state_dict_round_trip():
    eta = EtaEstimator(warmup_iterations=1, window_seconds=10.0)
    for i in range(1, 6):
        eta.update(i, 100 * i, 2.0 * i)
    eta.reset(5)
    for i in range(6, 20):
        eta.update(i, 100 * i + 7, 2.5 * i)
    state = eta.state_dict()
    assert state["origin"] == 5 and state["points"][-1] == [19, 1907, 47.5]
    fresh = EtaEstimator(warmup_iterations=1, window_seconds=10.0)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    assert fresh.samples_per_second == eta.samples_per_second == pytest.approx(40.0)
    eta.update(20, 2007, 50.0)
    fresh.update(20, 2007, 50.0)
    assert fresh.state_dict() == eta.state_dict()


@pytest.mark.parametrize("b0, g, cap, first, epochs, segments", [
    (64, 1.0, None, 0, 10**8, 1),  # constant: one segment however many epochs
    (8, 2.0, 100, 0, 10**8, 5),  # 8, 16, 32, 64, then 100 for the rest
    (1, 1.5, 2**20, 3, 200, 33),
    (100, 0.5, None, 0, 50, 7),  # 100, 50, 25, 12, 6, 3, then 1 for the rest
    (7, 1.0001, 10**6, 0, 30_000, 134),  # slow growth: one step per distinct size
])
def test_schedule_segments_match_epoch_by_epoch(b0, g, cap, first, epochs, segments):
    schedule = BatchSizeSchedule(b0, g, cap)
    runs = list(schedule.segments(first, epochs))
    assert len(runs) == segments and sum(count for _, count, _ in runs) == epochs
    assert [t for t, _, _ in runs] == [first] + [t + c for t, c, _ in runs[:-1]]  # contiguous
    for t, count, b in runs:
        if count < 10**6:
            assert {schedule.at(i) for i in range(t, t + count)} == {b}
        assert schedule.at(t + count - 1) == b
    plan = plan_run(1000, b0, 1, first + epochs, batch_growth=g, max_batch_size=cap)
    if epochs <= 30_000:
        assert [e.batch_size for e in plan.epochs][first:] == [schedule.at(t) for t in range(first, first + epochs)]
