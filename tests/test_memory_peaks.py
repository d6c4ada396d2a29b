"""Exact per-epoch memory peaks: Linux's resettable VmHWM on the host (real /proc), torch's peak
counters reset at each epoch start (a fake torch.cuda, CPU only), and the fallbacks where neither exists."""

from __future__ import annotations

import builtins

import pytest
import torch
from conftest import collect, linear_job
from test_telemetry import GIB, FakeCuda, FakeGpu, FakeNvml
from torch import nn

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.core.device_samples import MIB
from trainmon.engine.core.report import event_line, peak_fields
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.run.trainer import Trainer
from trainmon.engine.telemetry.host import HostPeak
from trainmon.engine.telemetry.sampler import DeviceSampler

SPIKE = 300 * MIB

needs_vm_hwm = pytest.mark.skipif(not HostPeak().begin(), reason="no resettable VmHWM (Linux /proc/self/clear_refs)")


def spike() -> None:
    """About 300 MiB resident for a few tens of milliseconds, then gone (munmap)."""
    block = b"\x01" * SPIKE  # written, so every page is resident
    del block


@needs_vm_hwm
def test_a_short_host_spike_is_in_every_epochs_peak_and_gone_from_the_next():
    sampler = DeviceSampler(interval=1.0)  # not started: samples where the once-a-second thread could take them
    for _ in range(3):
        sampler.begin_epoch()
        before = sampler.sample_once().host.process_rss_mib
        spike()
        after = sampler.sample_once().host.process_rss_mib
        peak = sampler.epoch_peak()
        assert peak["host_rss_peak_source"] == "VmHWM" and peak["host_rss_peak_reason"] is None
        assert peak["host_rss_mib"] >= before + 0.95 * SPIKE / MIB  # the spike, exactly
        assert max(before, after) < before + 0.5 * SPIKE / MIB  # what sampling alone saw: nothing
    sampler.begin_epoch()
    sampler.sample_once()
    assert sampler.epoch_peak()["host_rss_mib"] < before + 0.5 * SPIKE / MIB  # reset at the epoch start


class SpikyLinear(nn.Module):
    """nn.Linear that holds ~300 MiB of host memory for a moment on the third forward of each epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.calls = nn.Linear(5, 1), 0

    def forward(self, x):
        self.calls += 1
        if self.training and self.calls % 7 == 3:  # 53 rows / batch 8 = 7 iterations an epoch
            spike()
        return self.linear(x)


@needs_vm_hwm
def test_epoch_ended_and_its_line_carry_the_exact_host_peak():
    job = linear_job(epochs=3)
    job.model = SpikyLinear()
    sampler = DeviceSampler(interval=60.0)  # not started: the thread would never sample inside the spike
    channel = Channel()
    Trainer(job, RunConfig.for_job(job), channel, sampler=sampler).run()
    _, events = collect(channel)
    ended = [e for e in events if isinstance(e, msg.EpochEnded)]
    sampled = max(y for _, y in sampler.rss_history.points())
    assert len(ended) == 3
    for e in ended:
        assert e.peak_memory["host_rss_peak_source"] == "VmHWM"
        assert e.peak_memory["host_rss_mib"] >= sampled + 0.9 * SPIKE / MIB
        assert " peak_rss_source=VmHWM peak_rss_mib=" in event_line(e)


@pytest.mark.parametrize("layout", ["absent", "a directory", "no VmHWM line"])
def test_without_a_resettable_vm_hwm_the_peak_is_sampled_and_says_why(tmp_path, layout):
    if layout == "a directory":
        (tmp_path / "clear_refs").mkdir()
    if layout == "no VmHWM line":
        (tmp_path / "clear_refs").write_text("")
        (tmp_path / "status").write_text("Name:\tpython\nVmRSS:\t 1000 kB\n")
    sampler = DeviceSampler(nvml=FakeNvml([]), proc=str(tmp_path))
    sampler.begin_epoch()
    rss = sampler.sample_once().host.process_rss_mib
    peak = sampler.epoch_peak()
    assert (peak["host_rss_mib"], peak["host_rss_peak_source"]) == (rss, "sampled")
    assert peak["host_rss_peak_reason"].startswith({"absent": "FileNotFoundError", "a directory": "IsADirectoryError",
                                                    "no VmHWM line": "no VmHWM line"}[layout])


def test_clear_refs_permission_denied_falls_back_to_sampling(monkeypatch):
    real_open = builtins.open

    def denying_open(path, *args, **kwargs):  # what an unprivileged container's /proc answers
        if str(path).endswith("clear_refs"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denying_open)
    sampler = DeviceSampler(nvml=FakeNvml([]))
    sampler.begin_epoch()
    assert sampler.epoch_peak()["host_rss_peak_source"] is None  # no sample yet: no figure, no source
    sampler.sample_once()
    peak = sampler.epoch_peak()
    assert peak["host_rss_peak_source"] == "sampled" and peak["host_rss_mib"] > 0
    assert peak["host_rss_peak_reason"].startswith("PermissionError")


def test_fake_proc_vm_hwm_is_read_in_kib(tmp_path):
    (tmp_path / "clear_refs").write_text("")
    (tmp_path / "status").write_text("Name:\tpython\nVmHWM:\t  318036 kB\nVmRSS:\t   10836 kB\n")
    probe = HostPeak(str(tmp_path))
    assert probe.read() is None  # not exact before an epoch begins
    assert probe.begin() and (tmp_path / "clear_refs").read_text() == "5"
    assert probe.read() == 318036 / 1024


def test_cuda_is_not_touched_before_it_is_initialised(monkeypatch):
    cuda = FakeCuda(["00000000-0000-0000-0000-000000000000"])
    cuda.install(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda i: pytest.fail("reset before CUDA init"))
    sampler = DeviceSampler(nvml=FakeNvml([FakeGpu()]))
    sampler.begin_epoch()
    assert (sampler.epoch_peak()["torch_max_allocated_mib"], sampler.sample_once().gpus[0].torch_peak_epoch_mib) == (
        {}, None)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # the job moved its model to the GPU
    cuda.peak[0], cuda.peak_reserved[0] = 3 * GIB, 4 * GIB  # everything since CUDA came up is this epoch's
    peak = sampler.epoch_peak()
    assert (peak["torch_max_allocated_mib"], peak["torch_max_reserved_mib"]) == ({0: 3072}, {0: 4096})
    assert sampler.sample_once().gpus[0].torch_peak_epoch_mib == 3072


def test_a_failing_reset_leaves_the_device_out_and_never_raises(monkeypatch):
    cuda = FakeCuda(["00000000-0000-0000-0000-000000000000"])
    cuda.install(monkeypatch)

    def broken(i):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", broken)
    sampler = DeviceSampler(nvml=FakeNvml([FakeGpu()]))
    sampler.begin_epoch()
    cuda.alloc(0, 2 * GIB)
    g = sampler.sample_once().gpus[0]
    assert g.torch_peak_epoch_mib == 2048 and g.torch_peak_run_mib == 5120  # sampled: below the run's 5 GiB
    assert sampler.epoch_peak()["torch_max_allocated_mib"] == {}


def test_an_unused_device_is_not_in_the_exact_peaks(monkeypatch):
    cuda = FakeCuda(["0", "1"])
    cuda.install(monkeypatch)
    cuda.allocated[1] = cuda.reserved[1] = cuda.peak[1] = cuda.peak_reserved[1] = 0
    sampler = DeviceSampler(nvml=FakeNvml([]))
    sampler.begin_epoch()
    assert sampler.epoch_peak()["torch_max_reserved_mib"] == {0: 2048}


def test_peak_fields_name_the_source_before_the_figure():
    exact = {"host_rss_mib": 412.4, "host_rss_peak_source": "VmHWM"}
    sampled = {"host_rss_mib": 400.0, "host_rss_peak_source": "sampled", "gpu_memory_used_mib": {0: 7310.0}}
    assert peak_fields(exact) == " peak_rss_source=VmHWM peak_rss_mib=412"
    assert peak_fields(sampled) == " peak_rss_source=sampled peak_rss_mib=400 peak_gpu_mib=7310"
    assert peak_fields({"host_rss_mib": 412.0}) == " peak_rss_mib=412"  # an event log written before sources
