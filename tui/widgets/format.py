"""Small formatting helpers shared by the panes (no widgets here)."""

from __future__ import annotations

import math
from typing import Optional


def num(value: Optional[float], digits: int = 4) -> str:
    """A loss for display: `--` when absent, `NaN`/`Inf` spelled out."""
    if value is None:
        return "--"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return f"{value:.{digits}f}"


def of(count: int, total: Optional[int]) -> str:
    """`57/225`, or `57/?` for an unknown total."""
    return f"{count}/{'?' if total is None else total}"


def rate(value: Optional[float], unit: str) -> str:
    return f"-- {unit}" if value is None else f"{value:,.1f} {unit}"
