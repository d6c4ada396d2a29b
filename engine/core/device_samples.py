"""Device-telemetry samples: plain frozen dataclasses with no torch import, shared by the sampler
(engine/telemetry/sampler.py), the messages that carry them and every viewer.

Units: MiB (2**20 bytes), percent, °C, watts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment. Three memory figures differ by design: NVML used ≥ torch reserved ≥ torch allocated.

    `memory_used_mib`/`memory_total_mib`: NVML, whole device (all processes). `process_memory_mib`:
    this process, from NVML's process list (`process_memory_source="nvml"`) or, when NVML does not
    list our PID (containers see host PIDs), torch's reserved figure (`"torch"`). `torch_*`: this
    process's caching allocator (`memory_allocated`, `memory_reserved`, the run's peak allocated,
    and the exact peak since `DeviceSampler.begin_epoch`, which resets torch's peak counters).
    `mig`: MIG mode enabled. `reasons` maps a field name to why it is `None`.
    """

    index: int
    name: Optional[str] = None
    memory_used_mib: Optional[float] = None
    memory_total_mib: Optional[float] = None
    utilization_percent: Optional[float] = None
    temperature_c: Optional[float] = None
    power_w: Optional[float] = None
    mig: Optional[bool] = None
    process_memory_mib: Optional[float] = None
    process_memory_source: Optional[str] = None  # "nvml" or "torch"
    torch_allocated_mib: Optional[float] = None
    torch_reserved_mib: Optional[float] = None
    torch_peak_epoch_mib: Optional[float] = None
    torch_peak_run_mib: Optional[float] = None
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HostSample:
    """This process and its machine (psutil). `process_cpu_percent` is of one core, so it can exceed 100."""

    process_rss_mib: Optional[float] = None
    process_cpu_percent: Optional[float] = None
    ram_used_mib: Optional[float] = None
    ram_total_mib: Optional[float] = None
    cpu_count: Optional[int] = None  # logical CPUs
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceSample:
    """Every device at one moment.

    `time`: seconds on the sampler's clock (monotonic by default: only differences mean anything);
    `timestamp`: wall-clock seconds since the Unix epoch (`time.time()`) when the sample was taken,
    `None` for a sample built by hand; `nvml_reason`: why `gpus` may be empty.
    """

    time: float
    gpus: tuple[GpuSample, ...]
    host: HostSample
    nvml_available: bool
    nvml_reason: Optional[str] = None
    timestamp: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists), keys in the order `time`, `timestamp`, `gpus`, `host`, ..."""
        d = dataclasses.asdict(self)
        return {"time": d.pop("time"), "timestamp": d.pop("timestamp"), **d}
