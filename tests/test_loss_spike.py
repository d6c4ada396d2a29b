"""The `loss_spike` alert: a loss far above the recent level fires once per episode; the ordinary noise of
mini-batches (heavy-tailed for small batches), a falling loss and a short history never do."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainmon
from trainmon.engine.core import messages as msg
from trainmon.engine.core.loss_spike import MIN_HISTORY, LossSpikes, mad_of_sorted
from trainmon.engine.record.event_log import read_events


def _steady(n, seed=0, sd=0.05):
    rng = random.Random(seed)
    return [1.0 + rng.gauss(0, sd) for _ in range(n)]


def _heavy_tailed(n, seed=1):  # a batch of 8 near convergence: mostly tiny, now and then one hard sample
    rng = random.Random(seed)
    return [0.02 * math.exp(rng.gauss(0, 1.0)) + (rng.random() < 0.05) * rng.uniform(0.2, 1.5) for _ in range(n)]


def _falling(n, seed=2):
    rng = random.Random(seed)
    return [2.3 * math.exp(-i / 150) * math.exp(rng.gauss(0, 0.3)) for i in range(n)]


def _first_spike(values, read=10, factor=10.0):
    """Feed `values` (global iterations 1, 2, ...) `read` at a time; the global iterations that fired."""
    spikes = LossSpikes(factor)
    fired, before = [], None
    for start in range(0, len(values), read):
        spike = spikes.check([(start + i + 1, v) for i, v in enumerate(values[start:start + read])])
        if spike is not None and before is None:  # RunCore's one alert an episode: until a read without a spike
            fired.append(spike.global_iteration)
        before = spike
    return fired


def _batch_of_2(n, seed=5):  # digits at batch 2 near convergence: median ~0.7, now and then one loss of 20-30
    rng = random.Random(seed)
    return [0.7 * math.exp(rng.gauss(0, 0.8)) * (40 if rng.random() < 0.003 else 1) for _ in range(n)]


def _diverging(n, start=1.0, rate=1.3):  # the loss of a run whose learning rate is too high: up and up
    return [start * rate ** i for i in range(n)]


@pytest.mark.parametrize("values, fired", [
    (_steady(400), []),                                   # noise around 1.0
    (_steady(300) + [5.0] * 3 + _steady(97, 3), [301]),   # five times the level, 3 losses in a row
    (_steady(300) + [5.0] + _steady(99, 3), []),          # one loss up, then back: noise, however high
    (_steady(300) + [5.0, 1.0, 5.0, 1.0, 5.0] + _steady(95, 3), [301]),  # 3 of 5 in a row up
    (_steady(300) + [5.0, 1.0, 1.0, 5.0, 1.0, 1.0, 5.0] + _steady(93, 3), []),  # 2 of every 5: not yet
    (_steady(300) + [1.3] * 5 + _steady(95, 3), []),      # 1.3: six spreads up, inside the reach of the noise
    (_steady(300) + [2.0] * 5 + _steady(95, 3), [301]),
    (_steady(50) + [50.0] * 5 + _steady(95, 3), []),      # before MIN_HISTORY losses: no level yet
    (_heavy_tailed(3000), []),                            # a small batch's heavy upper tail is noise
    (_batch_of_2(5000), []),                              # and a batch of 2's, single losses 40 times the median
    (_heavy_tailed(1000) + [20.0] * 4 + _heavy_tailed(500, 4), [1001]),
    # a divergence from 1001: told in the second read, once it is 3 times above the highest recent loss (~50)
    (_batch_of_2(1000) + _diverging(30) + _batch_of_2(200, 6), [1018]),
    (_falling(1500), []),                                 # a falling loss sits below its recent median
    (_steady(300) + [math.nan, 5.0, math.inf, 5.0, 5.0] + _steady(95, 3), [302]),  # NaN, Inf: the `nan` rule's
    (_steady(300) + [6.0] * 30 + _steady(70, 3), [301]),  # a loss that stays up is one spike, not one a read
])
def test_spikes_fire_where_the_loss_leaves_its_recent_level(values, fired):
    assert _first_spike(values) == fired


def test_the_level_and_its_threshold():
    spikes = LossSpikes(factor=10.0)
    assert spikes.threshold() is None
    spikes.check([(i, 1.0 + (i % 5) / 100) for i in range(1, MIN_HISTORY + 1)])  # 1.00 .. 1.04, 20 of each
    med, threshold = spikes.threshold()
    assert med == 1.02
    assert threshold == pytest.approx(1.12)  # 1.02 + 10 spreads of 0.01, above 2 · 1.04 - 1.02 = 1.06
    with pytest.raises(ValueError, match="loss_spike_factor must be a number > 0, not 0"):
        LossSpikes(0)


@pytest.mark.parametrize("values, med, mad", [
    ([5.0], 5.0, 0.0),
    ([1.0, 2.0], 2.0, 1.0),                       # med s[1]; deviations 0, 1
    ([1.0, 2.0, 3.0], 2.0, 1.0),                  # deviations 0, 1, 1
    ([1.0, 1.0, 1.0, 9.0], 1.0, 0.0),             # deviations 0, 0, 0, 8
    ([1.0, 2.0, 3.0, 4.0, 100.0], 3.0, 1.0),      # deviations 0, 1, 1, 2, 97
    ([-3.0, 0.0, 0.5, 0.6, 0.7, 9.0], 0.6, 0.6),  # deviations 0, 0.1, 0.1, 0.6, 3.6, 8.4 (rounded): the 4th
])
def test_median_and_median_absolute_deviation(values, med, mad):
    assert mad_of_sorted(values) == (med, pytest.approx(mad))


def test_the_median_absolute_deviation_is_the_sorted_deviations_own_value():
    """Found by bisection, it is exactly the `n // 2`-th of the sorted `|v - med|` (no rounding of its own), on
    random sets: even and odd sizes, ties, heavy tails."""
    rng = random.Random(0)
    for trial in range(3000):
        n = rng.randint(1, 300)
        draw = (lambda: rng.gauss(0, 1), lambda: float(rng.randint(0, 5)),
                lambda: math.exp(rng.gauss(0, 3)))[trial % 3]
        s = sorted(draw() for _ in range(n))
        med = s[n // 2]
        assert mad_of_sorted(s) == (med, sorted(abs(v - med) for v in s)[n // 2])


def _digits_run(tmp_path, spike_at: int):
    """A real track() run on scikit-learn's digits, batches of 8 (a noisy loss), 3 epochs (675 iterations);
    the loss it logs from global iteration `spike_at` for 10 iterations is 30 times the real one (the training
    itself stays healthy)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    dataset = TensorDataset(torch.tensor(data.data, dtype=torch.float32) / 16.0, torch.tensor(data.target))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer, name="digits-spike", quiet=True, run_dir=str(tmp_path / "run"))
    loader = DataLoader(dataset, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    iteration = 0
    for _ in run.epochs(3):
        for x, y in run.batches(loader):
            iteration += 1
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            run.log(loss.detach() * 30 if spike_at <= iteration < spike_at + 10 else loss.detach())
    return [e for _, e in read_events(tmp_path / "run")]


def test_a_real_noisy_digits_run_raises_one_loss_spike_where_its_loss_jumped(tmp_path):
    events = _digits_run(tmp_path, spike_at=500)
    assert sum(isinstance(e, msg.Finished) for e in events) == 1
    alerts = [e for e in events if isinstance(e, msg.Alert)]
    assert [(a.kind, a.epoch, a.global_iteration) for a in alerts] == [("loss_spike", 3, 500)]
    assert alerts[0].message.startswith("the loss jumped to ")
    assert "at global iteration 500, far above its recent level" in alerts[0].message
