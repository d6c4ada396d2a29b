"""Device telemetry (GPU, host) sampled on its own thread, so a training loop never waits on NVML.

Figures come from NVML (`nvidia-ml-py`, imported as `pynvml`), `torch.cuda`'s allocator counters and
`psutil`. Every field degrades on its own to `None` plus a reason in `reasons[field]`: NVML missing,
a query not supported (MIG, unified-memory devices), permission denied (containers) or a lost GPU.
Units: MiB (2**20 bytes), percent, °C, watts. Samples are plain frozen dataclasses (picklable).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, Optional

import psutil

from trainmon.engine.core.history import History, HistoryDelta
from trainmon.engine.core.device_samples import MIB, DeviceSample, GpuSample, HostSample



def _mib(n: Optional[float]) -> Optional[float]:
    return None if n is None else n / MIB


def _query(reasons: dict[str, str], fields: tuple[str, ...], explain: Callable[[BaseException], str],
           fn: Callable, *args: Any) -> Any:
    """`fn(*args)`, or `None` with `reasons[f] = explain(error)` for each field it feeds; never raises."""
    try:
        return fn(*args)
    except Exception as error:  # a telemetry query must never take the sampler down
        for f in fields:
            reasons[f] = explain(error)
        return None


class NvmlProbe:
    """Reads every GPU through NVML. `nvml` is the `pynvml` module (imported lazily) or a stand-in for tests.

    `nvmlInit` runs once, on first use; `close()` runs `nvmlShutdown`. Init failure (library not
    found, driver not loaded, pynvml missing) leaves `available` False with `reason`; it is not retried.
    """

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml
        self._opened = False
        self.available = False
        self.reason: Optional[str] = None

    def open(self) -> bool:
        """Initialise NVML once; True when it is usable."""
        if self._opened:
            return self.available
        self._opened = True
        try:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
            self._nvml.nvmlInit()
            self.available = True
        except Exception as error:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError, ...
            self.reason = f"no NVIDIA GPU (NVML unavailable): {error}"
        return self.available

    def close(self) -> None:
        """Shut NVML down if `open` initialised it (errors ignored)."""
        if self.available:
            self.available, self.reason = False, "NVML shut down (sampler stopped)"
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass

    def explain(self, error: BaseException) -> str:
        """A short reason for a failed query: "not supported", "no permission", "GPU lost" or the error's text."""
        nvml = self._nvml
        if isinstance(error, nvml.NVMLError):
            known = {nvml.NVML_ERROR_NOT_SUPPORTED: "not supported", nvml.NVML_ERROR_NO_PERMISSION: "no permission",
                     nvml.NVML_ERROR_GPU_IS_LOST: "GPU lost",
                     nvml.NVML_ERROR_LIBRARY_NOT_FOUND: "NVML library not found"}
            return known.get(getattr(error, "value", None), str(error))
        return f"{type(error).__name__}: {error}"

    def read(self, torch_figures: Callable[[int, Optional[str]], dict]) -> tuple[tuple[GpuSample, ...], Optional[str]]:
        """All GPUs, and a reason when the list itself could not be read.

        `torch_figures(index, uuid)` gives this process's torch fields for a GPU (see `TorchMemory.figures`).
        """
        if not self.open():
            return (), self.reason
        nvml = self._nvml
        try:
            count = nvml.nvmlDeviceGetCount()
        except Exception as error:
            return (), f"NVML device count: {self.explain(error)}"
        return tuple(self._read_gpu(i, torch_figures) for i in range(count)), None

    def _read_gpu(self, index: int, torch_figures: Callable[[int, Optional[str]], dict]) -> GpuSample:
        nvml, reasons, explain = self._nvml, {}, self.explain
        names = ("name", "memory_used_mib", "memory_total_mib", "utilization_percent", "temperature_c", "power_w",
                 "mig", "process_memory_mib")
        handle = _query(reasons, names, explain, nvml.nvmlDeviceGetHandleByIndex, index)
        if handle is None:
            torch_fields = _torch_with_fallback(torch_figures(index, None), reasons)
            return GpuSample(index, reasons=reasons, **torch_fields)
        name = _query(reasons, ("name",), explain, nvml.nvmlDeviceGetName, handle)
        memory = _query(reasons, ("memory_used_mib", "memory_total_mib"), explain, nvml.nvmlDeviceGetMemoryInfo, handle)
        util = _query(reasons, ("utilization_percent",), explain, nvml.nvmlDeviceGetUtilizationRates, handle)
        temp = _query(reasons, ("temperature_c",), explain, nvml.nvmlDeviceGetTemperature, handle,
                      nvml.NVML_TEMPERATURE_GPU)
        power = _query(reasons, ("power_w",), explain, nvml.nvmlDeviceGetPowerUsage, handle)  # milliwatts
        mig = self._mig_mode(handle, reasons)
        uuid = _query({}, ("uuid",), explain, nvml.nvmlDeviceGetUUID, handle)
        torch_part = torch_figures(index, uuid if isinstance(uuid, str) else None)
        procs = _query(reasons, ("process_memory_mib",), explain, nvml.nvmlDeviceGetComputeRunningProcesses, handle)
        mine = [p.usedGpuMemory for p in procs or () if p.pid == os.getpid() and p.usedGpuMemory is not None]
        if mine:
            torch_part.update(process_memory_mib=sum(mine) / MIB, process_memory_source="nvml")
        elif procs is not None:
            reasons["process_memory_mib"] = "not in NVML's process list (no CUDA context, or a container PID namespace)"
        torch_fields = _torch_with_fallback(torch_part, reasons)  # may replace the reason above with torch's figure
        return GpuSample(
            index,
            name=name.decode() if isinstance(name, bytes) else name,
            memory_used_mib=None if memory is None else _mib(memory.used),
            memory_total_mib=None if memory is None else _mib(memory.total),
            utilization_percent=None if util is None else float(util.gpu),
            temperature_c=None if temp is None else float(temp),
            power_w=None if power is None else power / 1000.0,
            mig=mig,
            reasons=reasons,
            **torch_fields,
        )

    def _mig_mode(self, handle: Any, reasons: dict[str, str]) -> Optional[bool]:
        nvml = self._nvml
        try:
            return nvml.nvmlDeviceGetMigMode(handle)[0] == nvml.NVML_DEVICE_MIG_ENABLE
        except nvml.NVMLError as error:
            if getattr(error, "value", None) == nvml.NVML_ERROR_NOT_SUPPORTED:
                return False  # a GPU without MIG support is not in MIG mode
            reasons["mig"] = self.explain(error)
        except Exception as error:
            reasons["mig"] = self.explain(error)
        return None


def _torch_with_fallback(part: dict, reasons: dict[str, str]) -> dict:
    """Move torch's reasons into `reasons`; use torch reserved as this process's memory when NVML gave none."""
    part = dict(part)
    reasons.update({k: v for k, v in part.pop("reasons", {}).items() if k not in reasons})
    if part.get("process_memory_source") is None and part.get("torch_reserved_mib") is not None:
        part.update(process_memory_mib=part["torch_reserved_mib"], process_memory_source="torch")
        reasons.pop("process_memory_mib", None)
    return part


class TorchMemory:
    """This process's `torch.cuda` allocator figures per GPU, and their exact peaks since `begin_epoch`.

    Reads only when torch is already imported and CUDA already initialised by the program, so
    sampling never imports torch nor creates a CUDA context (hundreds of MiB per GPU).
    `begin_epoch` calls `torch.cuda.reset_peak_memory_stats` on every device, so `max_memory_*`
    then cover the epoch exactly, whatever its spikes; the run's peak is kept here across resets.
    A program that reads `max_memory_allocated` itself sees it restart at each epoch. When CUDA
    was not initialised at `begin_epoch`, every allocation came after it: the counters are exact
    without a reset. When a reset fails, the epoch peak is the highest sampled `memory_allocated`
    unless the run's peak grew during the epoch (a lower bound).
    """

    _FIELDS = ("torch_allocated_mib", "torch_reserved_mib", "torch_peak_epoch_mib", "torch_peak_run_mib")

    def __init__(self) -> None:
        self._lock = threading.Lock()  # also orders counter reads against begin_epoch's read-and-reset
        self._baseline: dict[int, float] = {}  # torch index -> max_memory_allocated at begin_epoch (bytes)
        self._epoch_max: dict[int, float] = {}  # torch index -> highest allocated seen this epoch (bytes)
        self._reset: set[int] = set()  # torch indices whose peak counters were reset at begin_epoch
        self._cuda_at_begin = True  # False: CUDA came up during the epoch, its counters are the epoch's
        self._run_before: dict[int, float] = {}  # torch index -> max_memory_allocated before the last reset

    def _cuda(self) -> tuple[Any, Optional[str]]:
        torch = sys.modules.get("torch")
        if torch is None:
            return None, "torch not imported by this process"
        try:
            if not torch.cuda.is_available():
                return None, "CUDA not available to torch"
            if not torch.cuda.is_initialized():
                return None, "CUDA not initialised by this process"
        except Exception as error:
            return None, f"{type(error).__name__}: {error}"
        return torch.cuda, None

    def begin_epoch(self) -> None:
        """Reset every device's peak counters (host-side allocator stats: no GPU sync). Never raises."""
        cuda, _ = self._cuda()
        with self._lock:
            self._baseline, self._epoch_max, self._reset = {}, {}, set()
            self._cuda_at_begin = cuda is not None
            if cuda is None:
                return  # no CUDA yet: whatever it allocates later belongs to this epoch
            try:
                for i in range(cuda.device_count()):
                    peak, now = cuda.max_memory_allocated(i), cuda.memory_allocated(i)
                    self._baseline[i], self._epoch_max[i] = peak, now
                    self._run_before[i] = max(self._run_before.get(i, 0), peak)
                    cuda.reset_peak_memory_stats(i)
                    self._reset.add(i)
            except Exception:
                pass  # devices not reset keep the sampled lower bound (see the class docstring)

    def epoch_peaks(self) -> tuple[dict[int, float], dict[int, float]]:
        """`({torch index: max_memory_allocated MiB}, {torch index: max_memory_reserved MiB})` since
        `begin_epoch`, for devices whose figures are exact and that reserved memory this epoch
        (others are left out). Reads the allocator's counters only (no sync); never raises."""
        cuda, _ = self._cuda()
        allocated: dict[int, float] = {}
        reserved: dict[int, float] = {}
        if cuda is None:
            return allocated, reserved
        try:
            with self._lock:
                for i in range(cuda.device_count()):
                    if i in self._reset or not self._cuda_at_begin:
                        a, r = cuda.max_memory_allocated(i), cuda.max_memory_reserved(i)
                        if r > 0:  # a device this process never allocated on is not in use
                            allocated[i], reserved[i] = a / MIB, r / MIB
        except Exception:
            return {}, {}
        return allocated, reserved

    def figures(self, nvml_index: int, uuid: Optional[str]) -> dict:
        """The `torch_*` fields of `GpuSample` for one NVML GPU, with `reasons` for the missing ones.

        GPUs are matched by UUID (torch and NVML number them differently under CUDA_VISIBLE_DEVICES);
        without a UUID, by equal index.
        """
        cuda, why = self._cuda()
        if cuda is None:
            return {"reasons": {f: why for f in self._FIELDS}}
        try:
            i = self._torch_index(cuda, nvml_index, uuid)
            if i is None:
                return {"reasons": {f: "GPU not visible to torch" for f in self._FIELDS}}
            with self._lock:
                allocated, reserved = cuda.memory_allocated(i), cuda.memory_reserved(i)
                peak = cuda.max_memory_allocated(i)
                self._epoch_max[i] = max(self._epoch_max.get(i, 0), allocated)
                exact = i in self._reset or not self._cuda_at_begin
                epoch_peak = peak if exact or peak > self._baseline.get(i, 0) else self._epoch_max[i]
                run_peak = max(self._run_before.get(i, 0), peak)
        except Exception as error:
            return {"reasons": {f: f"{type(error).__name__}: {error}" for f in self._FIELDS}}
        return {"torch_allocated_mib": allocated / MIB, "torch_reserved_mib": reserved / MIB,
                "torch_peak_epoch_mib": epoch_peak / MIB, "torch_peak_run_mib": run_peak / MIB}

    @staticmethod
    def _torch_index(cuda: Any, nvml_index: int, uuid: Optional[str]) -> Optional[int]:
        count = cuda.device_count()
        torch_uuids = [getattr(cuda.get_device_properties(i), "uuid", None) for i in range(count)]
        if uuid and None not in torch_uuids:
            # NVML says "GPU-<8-4-4-4-12 hex>", torch's CUuuid prints the bare hex
            wanted = (uuid.split("-", 1)[1] if uuid.startswith(("GPU-", "MIG-")) else uuid).lower()
            matches = [i for i, u in enumerate(torch_uuids) if str(u).lower() == wanted]
            return matches[0] if matches else None
        return nvml_index if nvml_index < count else None


class HostProbe:
    """This process's RSS and CPU share, and the machine's RAM and CPU count, through psutil."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        _query({}, ("process_cpu_percent",), repr, self._process.cpu_percent, None)  # starts the CPU interval

    def read(self) -> HostSample:
        reasons: dict[str, str] = {}
        explain = lambda e: f"{type(e).__name__}: {e}"  # noqa: E731
        mem = _query(reasons, ("process_rss_mib",), explain, self._process.memory_info)
        cpu = _query(reasons, ("process_cpu_percent",), explain, self._process.cpu_percent, None)
        ram = _query(reasons, ("ram_used_mib", "ram_total_mib"), explain, psutil.virtual_memory)
        cpus = _query(reasons, ("cpu_count",), explain, psutil.cpu_count)
        if cpus is None:
            reasons.setdefault("cpu_count", "psutil could not tell")
        return HostSample(
            process_rss_mib=_mib(mem.rss) if mem else None,
            process_cpu_percent=cpu,
            ram_used_mib=_mib(ram.used) if ram else None,
            ram_total_mib=_mib(ram.total) if ram else None,
            cpu_count=cpus,
            reasons=reasons,
        )


class HostPeak:
    """This process's exact resident-memory high-water mark since `begin`, where the OS keeps one.

    Linux keeps `VmHWM` in `<proc>/status`; writing "5" to `<proc>/clear_refs` resets it to the
    current RSS (Linux ≥ 4.0; a counter reset, no page walk). Where that file is missing or not
    writable (other systems, gVisor, a seccomp or read-only /proc), `read` gives None with `reason`
    and callers fall back to sampled RSS. Child processes (DataLoader workers) are not included.
    """

    def __init__(self, proc: str = "/proc/self") -> None:
        self._status = os.path.join(proc, "status")
        self._clear_refs = os.path.join(proc, "clear_refs")
        self.exact = False  # True once `begin` reset VmHWM and it could be read back
        self.reason: Optional[str] = "no epoch begun"

    def begin(self) -> bool:
        """Reset the high-water mark to the current RSS; True when `read` will be exact. Never raises."""
        try:
            with open(self._clear_refs, "w") as f:
                f.write("5")
            hwm = self._vm_hwm()
        except Exception as error:  # PermissionError, FileNotFoundError, EINVAL before Linux 4.0, ...
            self.exact, self.reason = False, f"{type(error).__name__}: {error}"
            return False
        self.exact = hwm is not None
        self.reason = None if self.exact else f"no VmHWM line in {self._status}"
        return self.exact

    def read(self) -> Optional[float]:
        """The highest RSS since `begin`, in MiB, or None when it is not known exactly. Never raises."""
        if not self.exact:
            return None
        try:
            return self._vm_hwm()
        except Exception:
            return None

    def _vm_hwm(self) -> Optional[float]:
        with open(self._status) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MIB  # "VmHWM:  318036 kB"
        return None


class DeviceSampler:
    """Samples every device about once per `interval` seconds on a daemon thread; the UI reads `latest()`.

    `nvml`: a `pynvml`-like module (default: `pynvml`, imported lazily). `clock`: seconds, for
    `DeviceSample.time` and the history's x axis (seconds since the sampler was made). `history`:
    points kept per series in `gpu_memory_history` and `rss_history` (read them from another thread
    through `history_since`). No method raises because a device query failed; the thread survives
    any exception in a sample (its text is kept in `last_error`). `stop()` shuts NVML down. `proc`:
    this process's /proc directory, for the exact host peak (see `HostPeak`).
    """

    def __init__(self, interval: float = 1.0, nvml: Any = None, clock: Callable[[], float] = time.monotonic,
                 history: int = 512, proc: str = "/proc/self") -> None:
        self.interval = interval
        self.clock = clock
        self.gpu_memory_history = History(capacity=history)  # (seconds, MiB NVML used, first GPU)
        self.rss_history = History(capacity=history)  # (seconds, MiB process RSS)
        self.last_error: Optional[str] = None
        self._nvml = NvmlProbe(nvml)
        self._torch = TorchMemory()
        self._host = HostProbe()
        self._host_peak = HostPeak(proc)
        self._t0 = clock()
        self._lock = threading.Lock()  # guards latest, histories and peaks
        self._sampling = threading.Lock()  # one sample at a time (thread vs sample_once)
        self._latest: Optional[DeviceSample] = None
        self._peak_gpu: dict[int, float] = {}
        self._peak_torch: dict[int, float] = {}
        self._peak_rss: Optional[float] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "DeviceSampler":
        """Start the sampling thread (no-op when running)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="trainmon-telemetry", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop, wait up to `timeout` seconds for it, then shut NVML down."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._sampling:
            self._nvml.close()

    close = stop

    def __enter__(self) -> "DeviceSampler":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()  # pacing uses real time whatever `clock` is
            try:
                self.sample_once()
            except Exception as error:  # keep sampling whatever one sample did
                self.last_error = f"{type(error).__name__}: {error}"
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def sample_once(self) -> DeviceSample:
        """Take one sample now (also what the thread does), store it as `latest()` and in the histories."""
        with self._sampling:
            gpus, reason = self._nvml.read(self._torch.figures)
            sample = DeviceSample(time=self.clock(), gpus=gpus, host=self._host.read(),
                                  nvml_available=self._nvml.available, nvml_reason=reason, timestamp=time.time())
        self._record(sample)
        return sample

    def _record(self, sample: DeviceSample) -> None:
        x, rss = sample.time - self._t0, sample.host.process_rss_mib
        with self._lock:
            self._latest = sample
            for gpu in sample.gpus:
                if gpu.memory_used_mib is not None:
                    self._peak_gpu[gpu.index] = max(self._peak_gpu.get(gpu.index, 0.0), gpu.memory_used_mib)
                if gpu.torch_peak_epoch_mib is not None:
                    self._peak_torch[gpu.index] = gpu.torch_peak_epoch_mib
            if rss is not None:
                self._peak_rss = rss if self._peak_rss is None else max(self._peak_rss, rss)
                self.rss_history.append(x, rss)
            if sample.gpus and sample.gpus[0].memory_used_mib is not None:
                self.gpu_memory_history.append(x, sample.gpus[0].memory_used_mib)

    def latest(self) -> Optional[DeviceSample]:
        """The newest sample, or None before the first one."""
        with self._lock:
            return self._latest

    def history_since(self, gpu_version: int, rss_version: int) -> tuple[HistoryDelta, HistoryDelta]:
        """Deltas of (`gpu_memory_history`, `rss_history`) after the given versions, read under the lock."""
        with self._lock:
            return self.gpu_memory_history.since(gpu_version), self.rss_history.since(rss_version)

    def begin_epoch(self) -> None:
        """Start new epoch peaks: reset torch's peak counters and Linux's VmHWM, clear the sampled
        peaks (NVML used, host RSS). Takes no sample; never raises."""
        self._torch.begin_epoch()
        self._host_peak.begin()
        with self._lock:
            self._peak_gpu, self._peak_torch, self._peak_rss = {}, {}, None

    def epoch_peak(self) -> dict[str, Any]:
        """Peaks since `begin_epoch`, in MiB; never raises. GPUs without a figure are left out.

        - `gpu_memory_used_mib`: {NVML index: NVML used}, sampled (an epoch shorter than `interval`
          may have no sample yet);
        - `torch_peak_mib`: {NVML index: `torch_peak_epoch_mib` of the last sample};
        - `torch_max_allocated_mib`, `torch_max_reserved_mib`: {torch index (`cuda:i`): MiB}, exact
          (`max_memory_*` after `reset_peak_memory_stats`), read now;
        - `host_rss_mib`: this process's peak RSS, or None; `host_rss_peak_source`: `"VmHWM"` when
          exact (Linux, resettable), `"sampled"` when the highest RSS sample (a lower bound), None;
          `host_rss_peak_reason`: why it is not exact, None when it is.
        """
        hwm = self._host_peak.read()
        allocated, reserved = self._torch.epoch_peaks()
        with self._lock:
            gpus, torch_peaks, sampled = dict(self._peak_gpu), dict(self._peak_torch), self._peak_rss
        if hwm is not None:  # ≥ every sample in practice; max() keeps the peak ≥ any RSS shown this epoch
            rss, source = max(hwm, sampled or 0.0), "VmHWM"
        else:
            rss, source = sampled, None if sampled is None else "sampled"
        return {"gpu_memory_used_mib": gpus, "torch_peak_mib": torch_peaks,
                "torch_max_allocated_mib": allocated, "torch_max_reserved_mib": reserved,
                "host_rss_mib": rss, "host_rss_peak_source": source, "host_rss_peak_reason": self._host_peak.reason}
