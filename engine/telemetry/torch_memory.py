"""torch.cuda's allocator counters per GPU (allocated, reserved, epoch peaks), matched to NVML's devices."""

from __future__ import annotations

import sys
import threading
from typing import Any, Optional

from trainmon.engine.core.device_samples import MIB


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
