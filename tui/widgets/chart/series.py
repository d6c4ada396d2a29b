"""What the chart draws, before it is drawn: smoothing, thinning to the cells there are, finite values."""

from __future__ import annotations

import math
from typing import Optional

from trainmon.engine.core.history import Point


def ema(values: list[float], alpha: float = 0.1) -> list[float]:
    """Exponentially smoothed copy of `values` (bias-corrected, so the start is not pulled to 0)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = alpha * v + (1 - alpha) * avg
        out.append(avg / (1 - (1 - alpha) ** i))
    return out


def thin(points: list[Point], limit: int) -> list[Point]:
    """At most `limit` points, averaging neighbours, so a chart never draws more points than it has pixels."""
    if len(points) <= limit or limit < 1:
        return points
    step = len(points) / limit
    out = []
    for i in range(limit):
        chunk = points[int(i * step): max(int((i + 1) * step), int(i * step) + 1)]
        out.append((sum(p[0] for p in chunk) / len(chunk), sum(p[1] for p in chunk) / len(chunk)))
    return out


def spread(items: list, limit: int) -> list:
    """At most `limit` items picked evenly across `items`, first and last included."""
    if len(items) <= limit:
        return list(items)
    if limit < 2:
        return list(items[-1:])
    step = (len(items) - 1) / (limit - 1)
    return [items[round(i * step)] for i in range(limit)]


def finite(value: Optional[float]) -> Optional[float]:
    """`value`, or `None` when it is NaN or Inf (never a best value, never an axis limit)."""
    return value if value is not None and math.isfinite(value) else None
