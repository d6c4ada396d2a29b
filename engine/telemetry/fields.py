"""What every telemetry figure shares: MiB from bytes, and a query that degrades to `None` plus a reason."""

from __future__ import annotations

from typing import Any, Callable, Optional

from trainmon.engine.core.device_samples import MIB


def mib(n: Optional[float]) -> Optional[float]:
    return None if n is None else n / MIB


def query(reasons: dict[str, str], fields: tuple[str, ...], explain: Callable[[BaseException], str],
           fn: Callable, *args: Any) -> Any:
    """`fn(*args)`, or `None` with `reasons[f] = explain(error)` for each field it feeds; never raises."""
    try:
        return fn(*args)
    except Exception as error:  # a telemetry query must never take the sampler down
        for f in fields:
            reasons[f] = explain(error)
        return None
