"""This process and this machine through psutil, and the process's resettable peak RSS (Linux VmHWM)."""

from __future__ import annotations

import os
from typing import Optional

import psutil

from trainmon.engine.core.device_samples import MIB, HostSample
from trainmon.engine.telemetry.fields import mib, query


class HostProbe:
    """This process's RSS and CPU share, and the machine's RAM and CPU count, through psutil."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        query({}, ("process_cpu_percent",), repr, self._process.cpu_percent, None)  # starts the CPU interval

    def read(self) -> HostSample:
        reasons: dict[str, str] = {}
        explain = lambda e: f"{type(e).__name__}: {e}"  # noqa: E731 - a one-line helper reads best beside its use
        mem = query(reasons, ("process_rss_mib",), explain, self._process.memory_info)
        cpu = query(reasons, ("process_cpu_percent",), explain, self._process.cpu_percent, None)
        ram = query(reasons, ("ram_used_mib", "ram_total_mib"), explain, psutil.virtual_memory)
        cpus = query(reasons, ("cpu_count",), explain, psutil.cpu_count)
        if cpus is None:
            reasons.setdefault("cpu_count", "psutil could not tell")
        return HostSample(
            process_rss_mib=mib(mem.rss) if mem else None,
            process_cpu_percent=cpu,
            ram_used_mib=mib(ram.used) if ram else None,
            ram_total_mib=mib(ram.total) if ram else None,
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
