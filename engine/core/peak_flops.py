"""Peak dense FLOP/s of common GPUs by name and precision: the denominator of MFU, and nothing guessed.

MFU (model FLOPs utilisation) divides the FLOP/s a job achieves by what its devices could do at most. The
figures below are the vendor's datasheet peaks for dense math (no 2:4 structured sparsity: where a datasheet
gives only the sparse figure, half of it), per device, in FLOP/s:

| device (NVML / torch name holds)  | bf16 / fp16 (tensor cores) | fp32 (no TF32) | source |
|---|---|---|---|
| H100 SXM (`H100`, `H100 80GB HBM3`) | 989.5 T | 67 T | NVIDIA H100 datasheet (1,979 T bf16 sparse) |
| H100 PCIe                           | 756.5 T | 51 T | ibid. (1,513 T sparse) |
| H100 NVL                            | 835.5 T | 60 T | ibid. (1,671 T sparse) |
| H200 (SXM)                          | 989.5 T | 67 T | NVIDIA H200 datasheet (1,979 T sparse) |
| H200 NVL                            | 835.5 T | 60 T | ibid. (1,671 T sparse) |
| A100 (SXM4 and PCIe, 40/80 GB)      | 312 T   | 19.5 T | NVIDIA A100 datasheet (624 T sparse) |
| L4                                  | 121 T   | 30.3 T | NVIDIA L4 datasheet (242 T sparse) |
| A10                                 | 125 T   | 31.2 T | NVIDIA A10 datasheet (250 T sparse) |
| V100 SXM2 / V100 PCIe               | fp16 125 T / 112 T, no bf16 | 15.7 T / 14 T | NVIDIA V100 datasheet |
| T4                                  | fp16 65 T, no bf16 | 8.1 T | NVIDIA T4 datasheet |

`fp32` is plain FP32 (PyTorch's default for fp32 matmuls: TF32 is off unless the job turns it on, and then
the figure understates its peak). A CPU, an unknown GPU (a name no row matches, e.g. an A10G or a
GH200), or a precision a device lacks (bf16 on a T4) has no figure: `peak_flops` returns `None` and the
monitor says "MFU: unknown (no peak figure for this device)" rather than guess. Torch-free.
"""

from __future__ import annotations

import re
from typing import Optional

T = 1e12
PRECISIONS = ("fp32", "bf16", "fp16")
_ALIASES = {"float32": "fp32", "float": "fp32", "32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16",
            "16": "fp16", "16-mixed": "fp16", "bf16-mixed": "bf16", "32-true": "fp32"}

# (pattern searched in the lower-cased device name, the row's label, {precision: FLOP/s}); the first match wins,
# so a variant (PCIe, NVL) comes before its family
PEAKS: tuple[tuple[str, str, dict[str, float]], ...] = (
    (r"\bh100\b.*\bpcie\b", "H100 PCIe", {"bf16": 756.5 * T, "fp16": 756.5 * T, "fp32": 51 * T}),
    (r"\bh100\b.*\bnvl\b", "H100 NVL", {"bf16": 835.5 * T, "fp16": 835.5 * T, "fp32": 60 * T}),
    (r"\bh100\b", "H100 SXM", {"bf16": 989.5 * T, "fp16": 989.5 * T, "fp32": 67 * T}),
    (r"\bh200\b.*\bnvl\b", "H200 NVL", {"bf16": 835.5 * T, "fp16": 835.5 * T, "fp32": 60 * T}),
    (r"\bh200\b", "H200 SXM", {"bf16": 989.5 * T, "fp16": 989.5 * T, "fp32": 67 * T}),
    (r"\ba100\b", "A100", {"bf16": 312 * T, "fp16": 312 * T, "fp32": 19.5 * T}),
    (r"\bl4\b", "L4", {"bf16": 121 * T, "fp16": 121 * T, "fp32": 30.3 * T}),
    (r"\ba10\b", "A10", {"bf16": 125 * T, "fp16": 125 * T, "fp32": 31.2 * T}),
    (r"\bv100\b.*\bpcie\b", "V100 PCIe", {"fp16": 112 * T, "fp32": 14 * T}),
    (r"\bv100\b", "V100 SXM2", {"fp16": 125 * T, "fp32": 15.7 * T}),
    (r"\bt4\b", "T4", {"fp16": 65 * T, "fp32": 8.1 * T}),
)


def precision_of(name: str) -> str:
    """`"bf16"` for `bf16`, `bfloat16`, `torch.bfloat16` or Lightning's `bf16-mixed` (likewise fp16, fp32).
    Raises `ValueError` (one line) for anything else."""
    key = str(name).lower().removeprefix("torch.")
    key = _ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise ValueError(f"trainmon: precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    return key


def device_row(device_name: Optional[str]) -> Optional[str]:
    """The table's label for an NVML / torch device name (`"NVIDIA H100 80GB HBM3"` → `"H100 SXM"`), `None`
    for a CPU or a GPU the table does not hold."""
    if not device_name:
        return None
    name = device_name.lower()
    return next((label for pattern, label, _ in PEAKS if re.search(pattern, name)), None)


def peak_flops(device_name: Optional[str], precision: str = "fp32") -> Optional[float]:
    """Peak dense FLOP/s of one device named `device_name` (NVML's or `torch.cuda.get_device_name`'s) at
    `precision` (see `precision_of`), from the table above; `None` when unknown (a CPU: `device_name` `None`,
    an unlisted GPU, or a precision the device lacks)."""
    if not device_name:
        return None
    name, key = device_name.lower(), precision_of(precision)
    for pattern, _label, peaks in PEAKS:
        if re.search(pattern, name):
            return peaks.get(key)
    return None
