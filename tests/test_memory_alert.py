"""The `memory` alert: a GPU whose memory in use reaches 90 % of its total raises one alert, from the
telemetry sampler's NVML figures (a fake NVML), read at publication."""

from __future__ import annotations

import json
from typing import Optional

import pytest
from conftest import collect, linear_job
from test_telemetry import GIB, FakeGpu, FakeNvml

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.core.alerts import ENV, AlertSettings
from trainmon.engine.core.device_samples import DeviceSample, GpuSample, HostSample
from trainmon.engine.core.memory_alert import memory_levels
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.run.trainer import Trainer
from trainmon.engine.telemetry.sampler import DeviceSampler


def _sample(*gpus: tuple) -> DeviceSample:
    return DeviceSample(0.0, tuple(GpuSample(i, "H100", used, total) for i, (used, total) in enumerate(gpus)),
                        HostSample(), True)


@pytest.mark.parametrize("gpus, full", [
    ([(72 * 1024, 80 * 1024)], ["gpu 0"]),                # exactly 90 %
    ([(71.9 * 1024, 80 * 1024)], []),                     # just under
    ([(10 * 1024, 80 * 1024), (79 * 1024, 80 * 1024)], ["gpu 1"]),
    ([(None, 80 * 1024), (79 * 1024, None)], []),         # unknown figures say nothing
])
def test_memory_levels(gpus, full):
    levels = list(memory_levels(_sample(*gpus), 0.9))
    assert [key for key, message in levels if message is not None] == full
    assert len(levels) == sum(1 for used, total in gpus if used is not None and total)


def test_the_message_names_the_device_and_its_figures():
    [(key, message)] = memory_levels(_sample((75 * 1024, 80 * 1024)), 0.9)
    assert key == "gpu 0"
    assert message == ("GPU 0 (H100) memory is 94% full: 75.0 of 80.0 GiB in use (alert at 90%): an out-of-memory "
                       "error may follow; lower the batch size or use gradient accumulation")


def _run(gpus: list[FakeGpu], monkeypatch, settings: Optional[AlertSettings] = None) -> list:
    monkeypatch.setenv(ENV, (settings or AlertSettings()).to_env())
    job = linear_job(epochs=3)
    sampler = DeviceSampler(interval=60.0, nvml=FakeNvml(gpus))  # not started: the epoch boundaries sample
    channel = Channel()
    Trainer(job, RunConfig.for_job(job), channel, sampler=sampler).run()
    _, events = collect(channel)
    return [e for e in events if isinstance(e, msg.Alert)]


def test_a_full_gpu_raises_one_memory_alert_in_a_real_run(monkeypatch):
    alerts = _run([FakeGpu(used=10 * GIB), FakeGpu(used=76 * GIB)], monkeypatch)
    assert [(a.kind, a.epoch) for a in alerts] == [("memory", 0)]  # sampled at the first publication, before epoch 1
    assert alerts[0].message.startswith("GPU 1 (NVIDIA H100 80GB HBM3) memory is 95% full: 76.0 of 80.0 GiB in use")
    assert _run([FakeGpu(used=76 * GIB)], monkeypatch, AlertSettings(memory_fraction=0.99)) == []
    assert _run([FakeGpu(used=76 * GIB)], monkeypatch, AlertSettings(off=("memory",))) == []


@pytest.mark.parametrize("settings, error", [
    ({"memory_fraction": 1.5}, "memory_fraction must be a fraction of the device's total, 0 to 1, not 1.5"),
    ({"memory_fraction": 0}, "memory_fraction must be a fraction of the device's total, 0 to 1, not 0"),
    ({"loss_spike_factor": -2.0}, "loss_spike_factor must be a number > 0, not -2.0"),
])
def test_thresholds_out_of_range_are_one_line(settings, error):
    with pytest.raises(ValueError, match=error):
        AlertSettings(**settings)
    with pytest.raises(ValueError, match=f"TRAINMON_ALERTS is not valid alert settings: {error}"):
        AlertSettings.from_env({ENV: json.dumps(settings)})


class Latest:
    """A sampler stand-in: `latest()` is whatever the test set."""

    def __init__(self) -> None:
        self.sample: Optional[DeviceSample] = None

    def latest(self) -> Optional[DeviceSample]:
        return self.sample


def test_the_alert_clears_below_and_comes_again_after_the_refire_gap():
    from trainmon.engine.core.schedule import BatchSizePolicy
    from trainmon.engine.core.window import AccumulationWindow
    from trainmon.engine.run.core import RunCore

    now = [0.0]
    sampler, channel = Latest(), Channel()
    core = RunCore(channel, BatchSizePolicy(8), AccumulationWindow(1), dataset_size=None, epochs=1, drop_last=False,
                   clock=lambda: now[0], sampler=sampler, alerts=AlertSettings())
    fired = []
    for at, used in [(0, 10), (1, 75), (2, 79), (3, 70), (4, 75), (400, 60), (401, 76)]:  # GiB of 80
        now[0] = at
        sampler.sample = _sample((used * 1024, 80 * 1024))
        core.memory_alerts()
        fired += [at for e in collect(channel)[1] if isinstance(e, msg.Alert)]
    assert fired == [1, 401]  # once while full; again after it cleared (at 3) and the 300 s gap passed


def test_the_first_publication_has_a_sample_before_the_samplers_thread_took_one():
    """CI, loaded: the first timeline row had no host memory (the thread had not run yet)."""
    job = linear_job(epochs=1)
    sampler = DeviceSampler(interval=60.0, nvml=FakeNvml([FakeGpu(total=80 * GIB, used=8 * GIB)]))  # never started
    trainer = Trainer(job, RunConfig.for_job(job), Channel(), sampler=sampler)
    trainer.run()
    first = trainer.core.timeline.rows()[0]
    assert first.global_iteration == 0 and first.host_mib is not None and first.host_mib > 0
    assert first.device_mib == 8 * 1024
