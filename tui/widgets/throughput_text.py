"""The speed line's throughput part: tokens/s where the job counts tokens, MFU where it gives FLOPs.

`107,545.6 tokens/s · MFU 41.2 % (H100 SXM)` after `it/s` and `samples/s`, from the snapshot's `throughput`
(engine/core/throughput.py); on a CPU or an unlisted GPU `MFU: unknown (no peak figure for this device)`.
"""

from __future__ import annotations

from typing import Optional

from trainmon.engine.core.format import SCREEN, figures, rate
from trainmon.engine.core.peak_flops import device_row
from trainmon.engine.core.throughput import UNKNOWN_MFU, Throughput


def throughput_groups(t: Optional[Throughput]) -> list[str]:
    """Screen groups after `it/s` and `samples/s`: `107,545.6 tokens/s`, then `MFU 41.2 %` (of the peak
    it assumes), `MFU estimating…` or `MFU: unknown (no peak figure for this device)`."""
    if t is None:
        return []
    groups = [rate(t.tokens_per_second, SCREEN, "tokens/s")] if t.unit == "tokens" else []
    if t.counts_flops:
        groups.append(mfu_text(t))
    return groups


def mfu_text(t: Throughput) -> str:
    """`MFU 41.2 % (H100 SXM)`-style words for one throughput (see `throughput_groups`)."""
    if t.peak_flops is None:
        return f"MFU: {UNKNOWN_MFU}"
    if t.mfu is None:
        return "MFU estimating…"
    row = device_row(t.device_name)
    return f"MFU {figures(100 * t.mfu, 3, SCREEN)} %" + (f" ({row})" if row else "")
