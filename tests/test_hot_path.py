"""The hot path of a tracked loop: per iteration only integers and references; the units folded in bulk give the
same figures as recording each iteration one at a time, and no loss is read inside the loop."""

from __future__ import annotations

import math
import random
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainmon
from trainmon.engine.core import messages as msg
from trainmon.engine.core.history import History
from trainmon.engine.record.rundir import read_events
from trainmon.engine.run.core import RunCore
from trainmon.engine.run.hot import HotPath
from trainmon.engine.run.losses import LossTracker

pytestmark = pytest.mark.timeout(120)


# ---- HotPath.take: what a span hands over ------------------------------------------------------


def test_take_keeps_what_belongs_to_the_iteration_in_progress():
    hot = HotPath()
    hot.inside, hot.active = 1, True
    for i in range(3):  # three iterations done, each logged, a step after the 2nd
        hot.log(f"l{i}")
        if i == 1:
            hot.step_hook(None, (), {})  # as the optimizer calls it
        hot.n += 1
    hot.log("l3", weight=7)  # the 4th iteration is in progress: logged, then stepped
    hot.step_hook(None, (), {})
    n, losses, weights, samples, steps, gaps, floats = hot.take()
    assert (n, losses, weights, samples, steps, gaps, floats) == (3, ["l0", "l1", "l2"], {}, None, [2], 0, False)
    # what stays belongs to the next span's first iteration
    assert (hot.n, hot.losses, hot.weights, hot.steps) == (0, ["l3"], {0: 7.0}, [1])


def test_take_counts_iterations_that_logged_nothing():
    hot = HotPath()
    hot.inside = 1
    hot.log("a")
    hot.n += 1
    hot.n += 1  # logged nothing
    hot.log("c")
    hot.log("c2")  # a second log in one iteration replaces the first
    hot.n += 1
    hot.n += 1  # nothing again, at the end
    n, losses, _, _, _, gaps, _ = hot.take()
    assert (n, losses, gaps) == (4, ["a", None, "c2"], 2)


# ---- LossTracker.add_span against one value at a time --------------------------------------------


def one_at_a_time(values, weights, first, closes):
    tracker = LossTracker(History())
    for i, (value, weight) in enumerate(zip(values, weights)):
        if value is not None:
            tracker.record(torch.tensor(value), first + i + 1, weight)
        if i + 1 in closes:
            tracker.close_window()
    flagged = tracker.flush()
    return tracker, flagged


def flat(state: dict) -> dict:
    out = {key: value for key, value in state.items() if not isinstance(value, (list, dict))}
    out.update(window_num=state["window_sums"][0], window_den=state["window_sums"][1],
               epoch_num=state["epoch_sums"][0], epoch_den=state["epoch_sums"][1])
    return out


@pytest.mark.parametrize("seed,gaps,nonfinite", [(0, False, False), (1, False, False), (2, True, False),
                                                 (3, False, True), (4, True, True)])
def test_a_span_gives_what_recording_each_value_gives(seed, gaps, nonfinite):
    rng = random.Random(seed)
    n = rng.randint(5, 200)
    values = [float(torch.tensor(rng.uniform(0.1, 3.0))) for _ in range(n)]  # float32 values, as losses are
    if gaps:
        for i in rng.sample(range(n), 3):
            values[i] = None
    if nonfinite:
        values[rng.randrange(n)] = math.nan
        values[rng.randrange(n)] = math.inf
    weights = [32.0] * (n - 1) + [float(rng.randint(1, 32))]
    closes = sorted(rng.sample(range(1, n + 1), rng.randint(0, n // 3)))
    expected, expected_flagged = one_at_a_time(values, weights, 100, closes)
    span = LossTracker(History())
    flagged = span.add_span(list(values), list(weights), 100, closes)
    assert flat(span.state_dict()) == pytest.approx(flat(expected.state_dict()), rel=1e-12, nan_ok=True)
    assert span.history.points() == pytest.approx(expected.history.points(), rel=1e-12)
    assert [(x, str(v)) for x, v in flagged] == [(x, str(v)) for x, v in expected_flagged]


def test_a_long_span_keeps_every_loss_in_the_history():
    """A fast loop's publication brings thousands of losses: each one is kept (loss.json and export need
    them), in bulk."""
    tracker = LossTracker(History(capacity=100_000, recent=100_000))
    values = [float(i % 7) for i in range(1000)]
    tracker.add_span(values, [1.0] * 1000, 10, [])
    assert tracker.history.points() == [(11 + i, v) for i, v in enumerate(values)]
    assert tracker.epoch_loss == pytest.approx(sum(values) / 1000)


@pytest.mark.parametrize("capacity,recent,n", [(8, 16, 1000), (64, 8192, 300), (2048, 8192, 5000)])
def test_history_in_bulk_equals_one_point_at_a_time(capacity, recent, n):
    rng = random.Random(n)
    values = [rng.uniform(0, 2) for _ in range(n)]
    one, bulk = History(capacity, recent), History(capacity, recent)
    for x, y in enumerate(values[:37], 6):
        one.append(x, y)
    bulk.extend_run(5, values[:37])
    for x, y in enumerate(values[37:], 43):
        one.append(x, y)
    bulk.extend_run(42, values[37:])
    assert bulk.points() == pytest.approx(one.points())
    assert bulk.version == one.version and bulk.since(one.version - 10) == one.since(one.version - 10)


@pytest.mark.parametrize("recent,capacity,n", [(100, 8, 2000), (10_000, 4096, 25_000), (50, 4, 333)])
def test_loss_archive_in_bulk_equals_one_point_at_a_time(recent, capacity, n):
    from trainmon.engine.record.loss_archive import LossArchive

    rng = random.Random(recent)
    points = [(float(i + 1), rng.uniform(0, 2)) for i in range(n)]
    one, bulk = LossArchive(recent, capacity), LossArchive(recent, capacity)
    for x, y in points:
        one.append(x, y)
    for start in range(0, n, 777):  # publications of 777 points
        bulk.extend(points[start : start + 777])
    assert bulk.to_dict() == pytest.approx(one.to_dict())


# ---- a real tracked loop ----------------------------------------------------------------------------


def test_no_loss_is_read_inside_the_loop(monkeypatch):
    """With no publication due, a whole epoch runs without one read of a loss: reads happen when the span is
    folded (here at the epoch's end), never per iteration."""
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(200, 8), torch.randint(0, 3, (200,)))
    loader = DataLoader(data, batch_size=16)
    model = nn.Linear(8, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer, accum=2)
    run.tracker.publish_interval = 1e9  # the ticker never fires again...
    time.sleep(RunCore.IDLE_INTERVAL + 0.2)  # ...once the tick it was waiting for (no viewer: the idle rate) passed
    moments: list[tuple[int, int]] = []
    where = {"epoch": 0, "iteration": 0}
    logged: set[int] = set()
    kept = []  # the losses stay alive, so no id is reused
    real = {name: getattr(torch.Tensor, name) for name in ("item", "tolist", "__float__")}

    def counting(name):
        def read(self, *args):
            if id(self) in logged:  # a logged loss (the optimizer reads numbers of its own once)
                moments.append((where["epoch"], where["iteration"]))
            return real[name](self, *args)
        return read

    for name in real:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    for epoch in run.epochs(2):
        where["epoch"] = epoch
        for i, (x, y) in enumerate(run.batches(loader)):
            where["iteration"] = i
            loss = nn.functional.cross_entropy(model(x), y)
            (loss / 2).backward()
            if run.window_end:
                optimizer.step()
                optimizer.zero_grad()
            run.log(loss)
            logged.add(id(loss))
            kept.append(loss)
    for name, method in real.items():
        monkeypatch.setattr(torch.Tensor, name, method)
    # every read came after the epoch's last iteration (index 12 of 13), in one bulk per epoch
    assert moments and set(moments) <= {(0, 12), (1, 12)}
    ended = [event for _, event in read_events(run.tracker.run_path) if isinstance(event, msg.EpochEnded)]
    assert [(e.iterations, e.steps, e.samples_seen) for e in ended] == [(13, 7, 200), (13, 7, 400)]


def test_the_slow_path_adapter_of_docs_architecture_counts_like_the_loop(tmp_path):
    """docs/architecture.md's ten-line adapter, as written there: its counts equal the loop's own."""
    from trainmon.engine.run.tracker import Tracker

    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randn(100, 8), torch.randint(0, 3, (100,))), batch_size=32)
    model = nn.Linear(8, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    epochs, k = 2, 2
    tracker = Tracker("my-framework", epochs=epochs, batch_size=32, accum=k, run_dir=str(tmp_path / "run")).start()
    tracker.watch_optimizer(optimizer, count_steps=False)
    steps = 0
    for epoch in range(epochs):
        tracker.begin_epoch(epoch + 1, iterations=len(loader))
        for i, batch in enumerate(loader):
            if not tracker.safe_point():
                break
            loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
            loss.backward()
            stepped = (i + 1) % k == 0 or i + 1 == len(loader)
            if stepped:
                optimizer.step()
                optimizer.zero_grad()
                steps += 1
            tracker.iteration_done(samples=len(batch[1]), loss=loss.detach())
            if stepped:
                tracker.step_done()
        tracker.validation(0.5, {"accuracy": 0.9})
        tracker.end_epoch()
    finished = tracker.finish()
    assert (finished.global_iteration, finished.global_step, finished.samples_seen) == (8, steps, 200)
    assert steps == 4 and finished.val_metrics == {"accuracy": 0.9}


def test_the_shown_loss_is_the_newest_even_when_it_is_not_finite():
    # issue 26 trial: with every loss NaN after iteration 1 the screen kept showing iteration 1's 2.2995
    tracker = LossTracker(History())
    for i, value in enumerate([2.2995, float("nan"), float("nan")], 1):
        tracker.record(torch.tensor(value), i, 1.0)
    tracker.flush()
    assert math.isnan(tracker.last) and tracker.best == pytest.approx(2.2995) and tracker.nonfinite == 2


def test_a_loss_that_turns_into_several_numbers_later_is_named_at_the_read():
    """The hot path checks a logged tensor's kind only; its shape is checked when the span is read, in bulk:
    the error still names the global iteration whose loss held several numbers."""
    loader = DataLoader(TensorDataset(torch.zeros(64, 2)), batch_size=4)
    run = trainmon.track(quiet=True)
    with pytest.raises(ValueError, match=r"^trainmon: run.log takes the batch's mean loss, one number, not a tensor "
                                         r"of shape \(4,\) \(global iteration 6\)$"):
        for _ in run.epochs(1):
            for i, _ in enumerate(run.batches(loader)):
                run.log(torch.zeros(4) if i == 5 else torch.tensor(0.5))
    run.close()


def test_losses_of_shape_one_among_0d_ones_read_as_their_numbers():
    loader = DataLoader(TensorDataset(torch.zeros(16, 2)), batch_size=4)
    run = trainmon.track(quiet=True)
    for _ in run.epochs(1):
        for i, _ in enumerate(run.batches(loader)):
            run.log(torch.tensor([float(i)]) if i % 2 else torch.tensor(float(i)))
    run.close()
    ended = [event for _, event in read_events(run.tracker.run_path) if isinstance(event, msg.EpochEnded)]
    assert [e.train_loss for e in ended] == [pytest.approx(1.5)]  # (0 + 1 + 2 + 3) / 4, weighted by 4 samples each
