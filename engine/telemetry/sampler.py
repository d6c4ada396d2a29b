"""Device telemetry (GPU, host) sampled on its own thread, so a training loop never waits on NVML.

Figures come from NVML (`nvidia-ml-py`, imported as `pynvml`), `torch.cuda`'s allocator counters and
`psutil`. Every field degrades on its own to `None` plus a reason in `reasons[field]`: NVML missing,
a query not supported (MIG, unified-memory devices), permission denied (containers) or a lost GPU.
Units: MiB (2**20 bytes), percent, °C, watts. Samples are plain frozen dataclasses (picklable).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from trainmon.engine.core.device_samples import DeviceSample
from trainmon.engine.core.history import History, HistoryDelta
from trainmon.engine.telemetry.host import HostPeak, HostProbe
from trainmon.engine.telemetry.nvml import NvmlProbe
from trainmon.engine.telemetry.torch_memory import TorchMemory


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
