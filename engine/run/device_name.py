"""The name of the GPU a run trains on, as torch reports it: what MFU's peak table is looked up by."""

from __future__ import annotations

from typing import Any, Optional


def gpu_name(device: Any) -> Optional[str]:
    """`torch.cuda.get_device_name` of `device` (`"cuda"`, `"cuda:1"` or a `torch.device`), e.g.
    `"NVIDIA H100 80GB HBM3"`; `None` for a CPU or MPS device, or where CUDA cannot say (never raises).
    Called once, when a run is set up."""
    text = str(device)
    if not text.startswith("cuda"):
        return None
    try:
        import torch

        index = int(text.split(":", 1)[1]) if ":" in text else torch.cuda.current_device()
        return str(torch.cuda.get_device_name(index))
    except Exception:  # noqa: BLE001 - a device query degrades to "unknown", it never breaks a run
        return None
