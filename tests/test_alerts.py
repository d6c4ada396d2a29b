"""Alerts: one per condition while it lasts, settings that travel as JSON, and the `nan` alert of a real
run: one line in `logs`, however many losses stay NaN."""

from __future__ import annotations

import json
import subprocess
import sys

import msgspec
import pytest
import torch
from torch import nn

import trainmon
from trainmon.engine.core import messages as msg
from trainmon.engine.core.alerts import ALERT_KINDS, ENV, Alerts, AlertSettings
from trainmon.engine.core.report import event_line
from trainmon.engine.record.event_log import read_events


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("steps, fired", [
    # (seconds later, action, key) → whether `fire` said yes
    ([(0, "fire", ""), (1, "fire", ""), (2, "fire", "")], [True, False, False]),  # one while it lasts
    ([(0, "fire", ""), (1, "clear", ""), (2, "fire", "")], [True, None, False]),  # ended, but too soon again
    ([(0, "fire", ""), (1, "clear", ""), (301, "fire", "")], [True, None, True]),  # ended and 300 s later
    ([(0, "fire", "rank 1"), (1, "fire", "rank 2"), (2, "fire", "rank 1")], [True, True, False]),  # keys apart
])
def test_an_alert_fires_once_per_condition(steps, fired):
    clock = Clock()
    alerts = Alerts(AlertSettings(), clock)
    said = []
    for at, action, key in steps:
        clock.now = at
        said.append(alerts.fire("stall", key) if action == "fire" else alerts.clear("stall", key))
    assert said == fired
    assert alerts.count == sum(1 for s in fired if s)


def test_settings_turn_kinds_off_and_travel_as_json():
    settings = AlertSettings(off=("loss_spike",), stall_after=30.0, on_alert="cat >> alerts.jsonl")
    back = AlertSettings.from_env({ENV: settings.to_env()})
    assert back == settings
    assert [k for k in ALERT_KINDS if back.wants(k)] == [k for k in ALERT_KINDS if k != "loss_spike"]
    assert not AlertSettings(enabled=False).wants("nan")
    assert AlertSettings.from_env({}) == AlertSettings()
    with pytest.raises(ValueError, match="unknown alert kind 'nans': the kinds are nan, loss_spike"):
        AlertSettings(off=("nans",))
    with pytest.raises(ValueError, match="TRAINMON_ALERTS is not valid alert settings"):
        AlertSettings.from_env({ENV: '{"stall_after": -1}'})


def test_alert_line():
    line = event_line(msg.Alert("hang", "rank 1 on gpu4 sent nothing for 30 s", 2, 140, 1.5, rank=1, host="gpu4"))
    assert line == ('alert kind=hang message="rank 1 on gpu4 sent nothing for 30 s" epoch=2 global_iteration=140'
                    ' rank=1 host="gpu4"')


def _diverging_run(tmp_path, **env):
    """A track() run whose loss turns NaN at its 6th iteration and stays NaN (40 iterations)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer, name="diverging", quiet=True, run_dir=str(tmp_path / "run"))
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(20)]
    for _ in run.epochs(2):
        for i, (x, y) in enumerate(run.batches(data)):
            loss = nn.functional.cross_entropy(model(x), y)
            if i >= 5 or _ > 0:
                loss = loss * float("nan")
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            run.log(loss)
    return tmp_path / "run"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_loss_that_stays_nan_raises_one_alert(tmp_path):
    folder = _diverging_run(tmp_path)
    events = [e for _, e in read_events(folder)]
    alerts = [e for e in events if isinstance(e, msg.Alert)]
    assert len([e for e in events if isinstance(e, msg.NonFiniteLoss)]) == 35
    assert [(a.kind, a.epoch, a.global_iteration) for a in alerts] == [("nan", 1, 6)]
    assert alerts[0].message.startswith("the loss is nan at global iteration 6: the run diverged")
    logs = subprocess.run([sys.executable, "-m", "trainmon", "logs", str(folder)], capture_output=True, text=True,
                          timeout=60)
    lines = logs.stdout.splitlines()
    assert sum(line.startswith("nonfinite_loss ") for line in lines) == 10  # the first few, as headless prints them
    assert [line.split(" time=")[0] for line in lines if line.startswith("alert ")] == [
        'alert kind=nan message="the loss is nan at global iteration 6: the run diverged (lower the learning rate, '
        'clip gradients, check the data)" epoch=1 global_iteration=6']


def test_no_alerts_when_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, json.dumps({"off": ["nan"]}))
    folder = _diverging_run(tmp_path)
    assert not [e for _, e in read_events(folder) if isinstance(e, msg.Alert)]


def test_an_epoch_with_nonfinite_losses_reads_as_one(tmp_path):
    """Epoch 1: 15 of 20 losses NaN, its train_loss the mean of the 5 finite ones; epoch 2: all NaN, `n/a`. The line
    says how many of the epoch's losses were not finite, the export keeps `nonfinite` a count beside `train_losses`,
    and neither epoch is ever the screen's best one."""
    from trainmon.engine.record.export import epoch_record
    from trainmon.tui.widgets.loss_values import EpochBest

    ended = [e for _, e in read_events(_diverging_run(tmp_path)) if isinstance(e, msg.EpochEnded)]
    lines = [event_line(e) for e in ended]
    assert " nonfinite=15/20 " in lines[0] and " train_loss=n/a " in lines[1] and " nonfinite=20/20 " in lines[1]
    assert ended[0].train_loss is not None and [(r["nonfinite"], r["train_losses"]) for r in map(epoch_record, ended)] \
        == [(15, 20), (20, 20)]
    best = EpochBest()
    healthy = msgspec.structs.replace(ended[0], epoch=3, train_loss=ended[0].train_loss + 1, nonfinite=0)
    for event in [*ended, healthy]:
        best.take(event)
    assert best.train == (healthy.train_loss, 3)  # the higher, healthy epoch: the NaN one's mean is of 5 losses
