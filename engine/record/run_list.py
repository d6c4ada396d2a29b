"""The runs list of the monitor's runs screen: one row of figures per run directory, and the filter a user
types (`digits running lr=0.01`). Read from run.json and snapshot.json only (no event log, no loss history),
so 300 runs list in a fraction of a second. No torch, no textual.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Optional

from trainmon.engine.core.format import TABLE, count_of, metric
from trainmon.engine.core.liveness import aged, status_word
from trainmon.engine.core.report import epochs_done
from trainmon.engine.record.compare import settings_of
from trainmon.engine.record.rundir import RunInfo


@dataclass(frozen=True)
class RunRow:
    """One run as the runs screen lists it: `status` as `ls` words it (`stalled 4m12s`), `progress` the epochs
    done of those planned (`3/10`), `best_val` the lowest validation loss so far (`—`: none), `age` seconds
    since the run's last write (None: unknown), `settings` as `compare.settings_of` reads them."""

    id: str
    path: str
    status: str
    job: str
    progress: str
    best_val: str
    alerts: int
    age: Optional[float]
    live: bool
    settings: dict[str, Any]


def run_row(run: RunInfo, now: Optional[float] = None) -> RunRow:
    """`run`'s row, `now` in Unix seconds (default: the clock's)."""
    now = time.time() if now is None else now
    s = run.snapshot
    phase, phase_seconds, _age = aged(s.liveness if s else None, run.status.value, now)
    planned = (s.epochs if s else None) or (run.info.get("config") or {}).get("epochs")
    best = s.best_val_loss if s and s.best_val_loss is not None and math.isfinite(s.best_val_loss) else None
    return RunRow(run.id, str(run.path), status_word(run.status.value, phase, phase_seconds),
                  str(run.info.get("job") or "?"), count_of(epochs_done(s) if s else 0, planned),
                  metric(best, TABLE), int(run.info.get("alerts") or 0),
                  None if run.last_activity is None else max(0.0, now - run.last_activity), run.live,
                  settings_of(run.info, s))


def age_text(seconds: Optional[float]) -> str:
    """`42s`, `12m`, `5h`, `3d` (`—` unknown): how long ago, in its largest whole unit."""
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


class FilterError(ValueError):
    """A filter term that cannot be read (`lr=`, `=3`); the message is one line."""


def _same(want: str, have: Any) -> bool:
    """`lr=0.01` matches 0.01 and 1e-2; `drop_last=yes` a true; text compares without case."""
    if isinstance(have, bool):
        return want.lower() in (("true", "yes", "1") if have else ("false", "no", "0"))
    try:
        return float(want) == float(have)
    except (TypeError, ValueError):
        return want.lower() == str(have).lower()


def parse_filter(text: str) -> list[tuple[Optional[str], str]]:
    """The terms of a filter: `(name, value)` for `name=value` (a setting, `status` or `job`), `(None, word)`
    for a word any of id, job or status contains. Raises `FilterError` for `=x` or `x=`."""
    terms: list[tuple[Optional[str], str]] = []
    for word in text.split():
        if "=" in word:
            name, _, value = word.partition("=")
            if not name or not value:
                raise FilterError(f"{word!r}: a filter term is a word or name=value (lr=0.01)")
            terms.append((name.replace("-", "_").lower(), value))
        else:
            terms.append((None, word.lower()))
    return terms


def matches(row: RunRow, terms: list[tuple[Optional[str], str]]) -> bool:
    """Whether `row` meets every term of `parse_filter`'s: `status=running` matches the status's first word."""
    for name, value in terms:
        if name is None:
            if not any(value in text.lower() for text in (row.id, row.job, row.status)):
                return False
        elif name == "status":
            if row.status.split()[0].lower() != value.lower():
                return False
        elif name not in row.settings or not _same(value, row.settings[name]):
            return False
    return True
