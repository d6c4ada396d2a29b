"""The host and the software a run ran with, recorded once in run.json (`machine`, `versions`) for the config
screen. Cheap: NVML opened and shut once for the GPUs' names, package versions from their metadata."""

from __future__ import annotations

import os
import platform
import socket
import sys
from typing import Any, Optional


def gpu_names(nvml: Any = None) -> tuple[list[str], Optional[str]]:
    """`(names, reason)`: every GPU's name as NVML gives it (`["NVIDIA H100 80GB HBM3"]`), or `[]` and why
    (no NVML, no driver). Never raises; never initialises CUDA."""
    from trainmon.engine.telemetry.nvml import NvmlProbe

    probe = NvmlProbe(nvml)
    if not probe.open():
        return [], probe.reason
    try:
        lib = probe._nvml
        names = []
        for index in range(lib.nvmlDeviceGetCount()):
            name = lib.nvmlDeviceGetName(lib.nvmlDeviceGetHandleByIndex(index))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return names, None
    except Exception as exc:  # noqa: BLE001 - a device query degrades, it never breaks a run
        return [], f"NVML could not list the GPUs: {exc}"
    finally:
        probe.close()


def _version(package: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def host_info() -> dict[str, Any]:
    """`{"hostname", "platform", "cpu_count", "gpus", "gpus_reason"}` of this machine."""
    names, reason = gpu_names()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"hostname": socket.gethostname(), "platform": platform.platform(terse=True),
            "cpu_count": os.cpu_count(), "cpus_usable": usable, "gpus": names, "gpus_reason": reason}


def versions() -> dict[str, Optional[str]]:
    """Python's, torch's (when torch is imported: nothing is imported here), trainmon's, textual's, numpy's."""
    torch = sys.modules.get("torch")
    return {"python": sys.version.split()[0], "torch": getattr(torch, "__version__", None),
            "trainmon": _version("trainmon"), "textual": _version("textual"), "numpy": _version("numpy")}
