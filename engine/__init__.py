"""trainmon's engine: the training loop, its arithmetic, jobs and telemetry — usable without a terminal.

Never imports textual (checked by tests/test_boundaries.py and import-linter). `Job`, `RunConfig`,
`accuracy` and `Trainer` are importable from here; they load torch only when first used, so the
pure modules (arithmetic, history, messages) stay torch-free.
"""

from typing import Any

_LAZY = {
    "Job": "jobs.job",
    "RunConfig": "jobs.job",
    "accuracy": "jobs.job",
    "sgd": "jobs.job",
    "Trainer": "run.trainer",
    "Channel": "control.channel",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
