"""NVML through `nvidia-ml-py` (imported as `pynvml`): each GPU's figures, each degrading on its own to
`None` plus a reason (NVML missing, a query not supported, permission denied, a lost GPU)."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from trainmon.engine.core.device_samples import MIB, GpuSample
from trainmon.engine.telemetry.fields import mib, query


def _torch_with_fallback(part: dict, reasons: dict[str, str]) -> dict:
    """Move torch's reasons into `reasons`; use torch reserved as this process's memory when NVML gave none."""
    part = dict(part)
    reasons.update({k: v for k, v in part.pop("reasons", {}).items() if k not in reasons})
    if part.get("process_memory_source") is None and part.get("torch_reserved_mib") is not None:
        part.update(process_memory_mib=part["torch_reserved_mib"], process_memory_source="torch")
        reasons.pop("process_memory_mib", None)
    return part


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
        handle = query(reasons, names, explain, nvml.nvmlDeviceGetHandleByIndex, index)
        if handle is None:
            torch_fields = _torch_with_fallback(torch_figures(index, None), reasons)
            return GpuSample(index, reasons=reasons, **torch_fields)
        name = query(reasons, ("name",), explain, nvml.nvmlDeviceGetName, handle)
        memory = query(reasons, ("memory_used_mib", "memory_total_mib"), explain, nvml.nvmlDeviceGetMemoryInfo, handle)
        util = query(reasons, ("utilization_percent",), explain, nvml.nvmlDeviceGetUtilizationRates, handle)
        temp = query(reasons, ("temperature_c",), explain, nvml.nvmlDeviceGetTemperature, handle,
                      nvml.NVML_TEMPERATURE_GPU)
        power = query(reasons, ("power_w",), explain, nvml.nvmlDeviceGetPowerUsage, handle)  # milliwatts
        mig = self._mig_mode(handle, reasons)
        uuid = query({}, ("uuid",), explain, nvml.nvmlDeviceGetUUID, handle)
        torch_part = torch_figures(index, uuid if isinstance(uuid, str) else None)
        procs = query(reasons, ("process_memory_mib",), explain, nvml.nvmlDeviceGetComputeRunningProcesses, handle)
        mine = [p.usedGpuMemory for p in procs or () if p.pid == os.getpid() and p.usedGpuMemory is not None]
        if mine:
            torch_part.update(process_memory_mib=sum(mine) / MIB, process_memory_source="nvml")
        elif procs is not None:
            reasons["process_memory_mib"] = "not in NVML's process list (no CUDA context, or a container PID namespace)"
        torch_fields = _torch_with_fallback(torch_part, reasons)  # may replace the reason above with torch's figure
        return GpuSample(
            index,
            name=name.decode() if isinstance(name, bytes) else name,
            memory_used_mib=None if memory is None else mib(memory.used),
            memory_total_mib=None if memory is None else mib(memory.total),
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
