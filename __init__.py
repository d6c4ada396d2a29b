"""trainmon: a terminal training monitor for PyTorch.

`trainmon.track(optimizer, accum=4)` records a hand-written training loop as a trainmon run (see
`trainmon.engine.run.track`); `trainmon.integrations.lightning` and `trainmon.integrations.transformers`
hold the framework callbacks. Importing `trainmon` imports neither torch nor textual.
"""

from typing import Any

__all__ = ["track", "Run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from .engine.run import track as tracked_run

        return getattr(tracked_run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
