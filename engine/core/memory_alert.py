"""The `memory` rule: a device whose memory in use reaches a fraction of its total (NVML's whole-device
figures, all processes), read from the newest telemetry sample at publication. Torch-free."""

from __future__ import annotations

from typing import Any, Iterator, Optional


def memory_levels(sample: Any, fraction: float) -> Iterator[tuple[str, Optional[str]]]:
    """For each GPU of `sample` (a `DeviceSample`) with both NVML figures: its alert key (`"gpu N"`, N the
    NVML index) and the alert's message when its memory in use is ≥ `fraction` (0 to 1) of its total,
    else `None` (the condition ended). GPUs whose figures are unknown are left out."""
    for gpu in sample.gpus:
        used, total = gpu.memory_used_mib, gpu.memory_total_mib
        if used is None or not total:
            continue
        share = used / total
        message = None
        if share >= fraction:
            name = f" ({gpu.name})" if gpu.name else ""
            message = (f"GPU {gpu.index}{name} memory is {share:.0%} full: {used / 1024:.1f} of {total / 1024:.1f} "
                       f"GiB in use (alert at {fraction:.0%}): an out-of-memory error may follow; lower the batch "
                       f"size or use gradient accumulation")
        yield f"gpu {gpu.index}", message
