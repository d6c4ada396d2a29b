"""Device telemetry against a fake NVML (real pynvml error classes and constants) and the real psutil."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Optional

import psutil
import pynvml
import pytest
from click.testing import CliRunner

from trainmon.cli.devices import devices
from trainmon.engine.core.device_samples import MIB, DeviceSample, GpuSample
from trainmon.engine.telemetry.sampler import DeviceSampler

GIB = 1024 * MIB


@dataclass
class FakeGpu:
    """One device. `errors` maps a query name (or "*") to an NVML error code; tests edit it mid-run."""

    name: str = "NVIDIA H100 80GB HBM3"
    used: int = 10 * GIB
    total: int = 80 * GIB
    util: int = 42
    temp: int = 55
    power_mw: int = 250_000
    mig: int = pynvml.NVML_DEVICE_MIG_DISABLE
    procs: list = field(default_factory=list)  # (pid, bytes or None)
    errors: dict = field(default_factory=dict)


class FakeNvml:
    """A stand-in for the `pynvml` module: same error classes, constants, call shapes and units."""

    NVMLError = pynvml.NVMLError

    def __init__(self, gpus: list[FakeGpu], init_error: Optional[int] = None) -> None:
        self.gpus, self.init_error = gpus, init_error
        self.init_calls = self.shutdown_calls = 0
        self.lock = threading.Lock()
        for name in dir(pynvml):
            if name.startswith(("NVML_ERROR_", "NVML_TEMPERATURE_", "NVML_DEVICE_MIG_")):
                setattr(self, name, getattr(pynvml, name))

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def _gpu(self, handle: int, query: str) -> FakeGpu:
        gpu = self.gpus[handle]
        with self.lock:
            code = gpu.errors.get(query, gpu.errors.get("*"))
        if code is not None:
            raise pynvml.NVMLError(code)
        return gpu

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._gpu(index, "nvmlDeviceGetHandleByIndex")
        return index

    def nvmlDeviceGetName(self, h: int) -> str:
        return self._gpu(h, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, h: int) -> str:
        self._gpu(h, "nvmlDeviceGetUUID")
        return f"GPU-0000000{h}-0000-0000-0000-000000000000"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        g = self._gpu(h, "nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=g.total, used=g.used, free=g.total - g.used)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=self._gpu(h, "nvmlDeviceGetUtilizationRates").util, memory=10)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._gpu(h, "nvmlDeviceGetTemperature").temp

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetMigMode(self, h: int) -> list[int]:
        g = self._gpu(h, "nvmlDeviceGetMigMode")
        return [g.mig, g.mig]

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list:
        g = self._gpu(h, "nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0, computeInstanceId=0)
                for pid, used in g.procs]


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def samples_after(sampler: DeviceSampler, count: int = 2) -> DeviceSample:
    """Wait until `count` new samples have come from the thread; return the newest."""
    seen = []

    def newer():
        s = sampler.latest()
        if s is not None and (not seen or s.time != seen[-1]):
            seen.append(s.time)
        return len(seen) > count

    wait_for(newer)
    return sampler.latest()


def test_healthy_gpu_all_fields_in_their_units():
    nvml = FakeNvml([FakeGpu(procs=[(os.getpid(), 3 * GIB), (1, GIB)])])
    g = DeviceSampler(nvml=nvml).sample_once().gpus[0]
    assert (g.name, g.memory_used_mib, g.memory_total_mib) == ("NVIDIA H100 80GB HBM3", 10240, 81920)
    assert (g.utilization_percent, g.temperature_c, g.power_w, g.mig) == (42, 55, 250.0, False)
    assert (g.process_memory_mib, g.process_memory_source) == (3072, "nvml")
    assert set(g.reasons) == {"torch_allocated_mib", "torch_reserved_mib", "torch_peak_epoch_mib", "torch_peak_run_mib"}


def test_library_missing_leaves_host_figures():
    nvml = FakeNvml([FakeGpu()], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    with DeviceSampler(interval=0.01, nvml=nvml) as sampler:
        s = samples_after(sampler)
        assert sampler.running
    assert (s.nvml_available, s.gpus) == (False, ())
    assert s.nvml_reason == "no NVIDIA GPU (NVML unavailable): NVML Shared Library Not Found"
    assert s.host.process_rss_mib > 0
    assert nvml.init_calls == 1 and nvml.shutdown_calls == 0  # never initialised, so never shut down


def test_real_pynvml_on_a_machine_without_nvidia_gpu():
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("this machine has NVML")
    except pynvml.NVMLError:
        pass
    sampler = DeviceSampler()
    s = sampler.sample_once()
    sampler.stop()
    assert s.nvml_available is False and s.gpus == ()
    assert s.nvml_reason.startswith("no NVIDIA GPU (NVML unavailable): ")


@pytest.mark.parametrize("code, reason", [(pynvml.NVML_ERROR_NOT_SUPPORTED, "not supported"),
                                          (pynvml.NVML_ERROR_NO_PERMISSION, "no permission")])
def test_memory_query_fails_alone(code, reason):
    nvml = FakeNvml([FakeGpu(errors={"nvmlDeviceGetMemoryInfo": code})])
    with DeviceSampler(interval=0.01, nvml=nvml) as sampler:
        g = samples_after(sampler).gpus[0]
        assert sampler.running
    assert g.memory_used_mib is None and g.memory_total_mib is None
    assert g.reasons["memory_used_mib"] == g.reasons["memory_total_mib"] == reason
    assert (g.utilization_percent, g.temperature_c, g.power_w) == (42, 55, 250.0)


def test_process_list_denied_and_pid_missing():
    nvml = FakeNvml([FakeGpu(errors={"nvmlDeviceGetComputeRunningProcesses": pynvml.NVML_ERROR_NO_PERMISSION}),
                     FakeGpu(procs=[(1, GIB)])])  # a container sees host PIDs only
    a, b = DeviceSampler(nvml=nvml).sample_once().gpus
    assert a.process_memory_mib is None and a.reasons["process_memory_mib"] == "no permission"
    assert b.process_memory_mib is None and "process list" in b.reasons["process_memory_mib"]
    assert a.memory_used_mib == b.memory_used_mib == 10240


def test_mig_device_without_utilization():
    nvml = FakeNvml([FakeGpu(mig=pynvml.NVML_DEVICE_MIG_ENABLE,
                             errors={"nvmlDeviceGetUtilizationRates": pynvml.NVML_ERROR_NOT_SUPPORTED})])
    g = DeviceSampler(nvml=nvml).sample_once().gpus[0]
    assert g.mig is True and g.utilization_percent is None
    assert g.reasons["utilization_percent"] == "not supported"
    assert (g.memory_used_mib, g.temperature_c) == (10240, 55)


def test_gpu_without_mig_support_is_not_in_mig_mode():
    nvml = FakeNvml([FakeGpu(errors={"nvmlDeviceGetMigMode": pynvml.NVML_ERROR_NOT_SUPPORTED})])
    g = DeviceSampler(nvml=nvml).sample_once().gpus[0]
    assert g.mig is False and "mig" not in g.reasons


def test_two_gpus():
    nvml = FakeNvml([FakeGpu(), FakeGpu(name="NVIDIA A100-SXM4-40GB", used=GIB, total=40 * GIB, util=7)])
    s = DeviceSampler(nvml=nvml).sample_once()
    assert [(g.index, g.name, g.memory_used_mib, g.utilization_percent) for g in s.gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 10240, 42), (1, "NVIDIA A100-SXM4-40GB", 1024, 7)]


@pytest.mark.parametrize("code, reason", [(pynvml.NVML_ERROR_UNKNOWN, "Unknown Error"),
                                          (pynvml.NVML_ERROR_GPU_IS_LOST, "GPU lost")])
def test_error_mid_run_then_recovery(code, reason):
    nvml = FakeNvml([FakeGpu(), FakeGpu(used=2 * GIB)])
    with DeviceSampler(interval=0.01, nvml=nvml) as sampler:
        samples_after(sampler)
        with nvml.lock:
            nvml.gpus[1].errors["*"] = code  # GPU 1 fails every query, handle included
        wait_for(lambda: sampler.latest().gpus[1].name is None)
        broken = samples_after(sampler)
        assert sampler.running
        with nvml.lock:
            nvml.gpus[1].errors.clear()
        wait_for(lambda: sampler.latest().gpus[1].name is not None)
        healthy = samples_after(sampler)
        assert sampler.running
    g0, g1 = broken.gpus
    assert (g0.name, g0.memory_used_mib, g0.utilization_percent) == ("NVIDIA H100 80GB HBM3", 10240, 42)
    assert g1.memory_used_mib is None and g1.reasons["memory_used_mib"] == reason
    assert g1.reasons["power_w"] == g1.reasons["process_memory_mib"] == reason
    assert healthy.gpus[1].memory_used_mib == 2048 and "memory_used_mib" not in healthy.gpus[1].reasons
    assert nvml.init_calls == 1 and nvml.shutdown_calls == 1


def test_unexpected_exception_in_a_sample_keeps_the_thread(monkeypatch):
    sampler = DeviceSampler(interval=0.01, nvml=FakeNvml([FakeGpu()]))
    real, calls = sampler._host.read, []

    def flaky():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("psutil blew up")
        return real()

    monkeypatch.setattr(sampler._host, "read", flaky)
    with sampler:
        wait_for(lambda: len(calls) > 6)
        assert sampler.running and sampler.latest().gpus[0].memory_used_mib == 10240
    assert sampler.last_error == "RuntimeError: psutil blew up"
    assert not sampler.running


def test_non_nvml_exception_in_a_query_degrades_that_field():
    nvml = FakeNvml([FakeGpu()])
    nvml.nvmlDeviceGetPowerUsage = lambda h: 1 / 0
    g = DeviceSampler(nvml=nvml).sample_once().gpus[0]
    assert g.power_w is None and g.reasons["power_w"].startswith("ZeroDivisionError")
    assert g.temperature_c == 55


def test_nvml_initialised_once_and_shut_down_on_stop():
    nvml = FakeNvml([FakeGpu()])
    sampler = DeviceSampler(interval=0.01, nvml=nvml).start()
    samples_after(sampler, 5)
    sampler.sample_once()
    assert (nvml.init_calls, nvml.shutdown_calls) == (1, 0)
    sampler.stop()
    sampler.stop()
    assert (nvml.init_calls, nvml.shutdown_calls) == (1, 1)
    assert not sampler.running


def test_real_host_figures():
    h = DeviceSampler(nvml=FakeNvml([])).sample_once().host
    assert h.process_rss_mib > 0
    assert h.ram_total_mib == psutil.virtual_memory().total / MIB
    assert 0 < h.ram_used_mib < h.ram_total_mib
    assert h.cpu_count == psutil.cpu_count() and h.process_cpu_percent >= 0
    assert h.reasons == {}


def test_samples_pickle_and_serialise():
    s = DeviceSampler(nvml=FakeNvml([FakeGpu(errors={"nvmlDeviceGetPowerUsage": 3})])).sample_once()
    assert pickle.loads(pickle.dumps(s)) == s
    d = json.loads(json.dumps(s.to_dict()))
    assert d["gpus"][0]["power_w"] is None and d["gpus"][0]["reasons"]["power_w"] == "not supported"
    assert d["nvml_available"] is True and d["host"]["process_rss_mib"] > 0


def test_history_and_epoch_peaks_follow_the_clock():
    ticks = iter(range(100))
    nvml = FakeNvml([FakeGpu(used=GIB), FakeGpu(used=5 * GIB)])
    sampler = DeviceSampler(nvml=nvml, clock=lambda: float(next(ticks)))
    sampler.sample_once()
    nvml.gpus[0].used = 3 * GIB
    sampler.sample_once()
    assert [x for x, _ in sampler.gpu_memory_history.points()] == [1.0, 2.0]
    assert [y for _, y in sampler.gpu_memory_history.points()] == [1024, 3072]
    assert len(sampler.rss_history) == 2
    assert sampler.epoch_peak()["gpu_memory_used_mib"] == {0: 3072, 1: 5120}
    sampler.begin_epoch()
    fresh = sampler.epoch_peak()
    assert (fresh["gpu_memory_used_mib"], fresh["torch_peak_mib"]) == ({}, {})
    assert (fresh["torch_max_allocated_mib"], fresh["torch_max_reserved_mib"]) == ({}, {})  # no CUDA here
    nvml.gpus[0].used = 2 * GIB
    sampler.sample_once()
    peak = sampler.epoch_peak()
    assert peak["gpu_memory_used_mib"] == {0: 2048, 1: 5120} and peak["host_rss_mib"] > 0
    gpu_delta, rss_delta = sampler.history_since(2, 0)
    assert gpu_delta.points == [(3.0, 2048)] and len(rss_delta.points) == 3


def test_cuda_figures_absent_without_torch_cuda():
    g = DeviceSampler(nvml=FakeNvml([FakeGpu()])).sample_once().gpus[0]
    assert g.torch_allocated_mib is None and g.torch_peak_run_mib is None
    assert g.reasons["torch_reserved_mib"]


def test_devices_json_is_one_object():
    result = CliRunner().invoke(devices, ["--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    assert set(d) == {"time", "timestamp", "gpus", "host", "nvml_available", "nvml_reason"}
    assert d["host"]["ram_total_mib"] == psutil.virtual_memory().total / MIB


@pytest.mark.slow
def test_devices_table_in_a_fresh_process():
    out = subprocess.run([sys.executable, "-c", "from trainmon.cli.devices import devices; devices([])"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Host (psutil)" in out.stdout
    if "GPUs (NVML)" not in out.stdout:
        assert "no NVIDIA GPU (NVML unavailable)" in out.stdout


def test_gpu_sample_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GpuSample(0).name = "x"  # type: ignore[misc] - assigning to a frozen field is the point


class FakeCuda:
    """torch.cuda's allocator counters for GPUs seen by torch, in bytes; `uuids` as torch prints them.

    As in torch, the peaks follow what `alloc` sets and `reset_peak_memory_stats(i)` lowers them to
    the current figures."""

    def __init__(self, uuids: list[str]) -> None:
        self.uuids = uuids
        self.allocated = [GIB] * len(uuids)
        self.reserved = [2 * GIB] * len(uuids)
        self.peak = [5 * GIB] * len(uuids)
        self.peak_reserved = [6 * GIB] * len(uuids)
        self.resets = 0

    def alloc(self, i: int, allocated: int, reserved: Optional[int] = None) -> None:
        self.allocated[i] = allocated
        self.reserved[i] = max(self.reserved[i], allocated) if reserved is None else reserved
        self.peak[i] = max(self.peak[i], allocated)
        self.peak_reserved[i] = max(self.peak_reserved[i], self.reserved[i])

    def reset_peak_memory_stats(self, i: int) -> None:
        self.resets += 1
        self.peak[i], self.peak_reserved[i] = self.allocated[i], self.reserved[i]

    def install(self, monkeypatch) -> None:
        import torch

        for name, fn in {"is_available": lambda: True, "is_initialized": lambda: True,
                         "device_count": lambda: len(self.uuids),
                         "get_device_properties": lambda i: SimpleNamespace(uuid=self.uuids[i]),
                         "memory_allocated": lambda i: self.allocated[i], "memory_reserved": lambda i: self.reserved[i],
                         "max_memory_allocated": lambda i: self.peak[i],
                         "max_memory_reserved": lambda i: self.peak_reserved[i],
                         "reset_peak_memory_stats": self.reset_peak_memory_stats}.items():
            monkeypatch.setattr(torch.cuda, name, fn)


def test_torch_figures_matched_by_uuid_with_epoch_peak(monkeypatch):
    cuda = FakeCuda(["00000001-0000-0000-0000-000000000000"])  # CUDA_VISIBLE_DEVICES=1: torch 0 is NVML 1
    cuda.install(monkeypatch)
    nvml = FakeNvml([FakeGpu(), FakeGpu(procs=[(1, GIB)])])  # our PID is not listed (container)
    sampler = DeviceSampler(nvml=nvml)
    g0, g1 = sampler.sample_once().gpus
    assert g0.torch_allocated_mib is None and g0.reasons["torch_allocated_mib"] == "GPU not visible to torch"
    assert (g1.torch_allocated_mib, g1.torch_reserved_mib, g1.torch_peak_run_mib) == (1024, 2048, 5120)
    assert (g1.process_memory_mib, g1.process_memory_source) == (2048, "torch")
    assert "process_memory_mib" not in g1.reasons
    sampler.begin_epoch()  # run peak 5 GiB so far, 1 GiB allocated now: the epoch's peak starts there
    assert sampler.sample_once().gpus[1].torch_peak_epoch_mib == 1024
    cuda.alloc(0, 2 * GIB)
    cuda.alloc(0, GIB)  # a spike between two samples
    g1 = sampler.sample_once().gpus[1]
    assert (g1.torch_peak_epoch_mib, g1.torch_peak_run_mib) == (2048, 5120)  # exact epoch peak; run peak kept
    cuda.alloc(0, 7 * GIB, reserved=8 * GIB)
    cuda.alloc(0, GIB)
    assert sampler.sample_once().gpus[1].torch_peak_run_mib == 7168
    peak = sampler.epoch_peak()
    assert peak["torch_peak_mib"] == {1: 7168}  # NVML index
    assert (peak["torch_max_allocated_mib"], peak["torch_max_reserved_mib"]) == ({0: 7168}, {0: 8192})  # torch index
    sampler.begin_epoch()
    assert cuda.resets == 2
    g1 = sampler.sample_once().gpus[1]
    assert (g1.torch_peak_epoch_mib, g1.torch_peak_run_mib) == (1024, 7168)
    assert sampler.epoch_peak()["torch_max_reserved_mib"] == {0: 8192}  # still reserved by the cache
