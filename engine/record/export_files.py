"""A run's records (engine/record/export.py) as CSV files or JSON lines. No torch, no textual.

CSV: a folder with `iterations.csv`, `epochs.csv` and `events.csv`, one header row each.
JSONL: one JSON object per line, each with a `record` field: `run` first, then `iteration` and
`aggregate` rows oldest first, then `epoch` rows, then the events (`batch_size_changed`, ...).
NaN and Inf are not JSON: they are written as the strings `"nan"`, `"inf"`, `"-inf"`.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterator, TextIO

from trainmon.engine.record.export import RunRecords

ITERATION_COLUMNS = ("record", "global_iteration", "optimizer_step", "epoch", "loss",
                     "first_iteration", "last_iteration", "count", "mean", "min", "max")
EVENT_COLUMNS = ("record", "seq", "epoch", "global_iteration", "optimizer_step")
CSV_FILES = ("iterations.csv", "epochs.csv", "events.csv")


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float spelled as a string Python's `float()` reads back."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def jsonl_lines(records: RunRecords) -> Iterator[str]:
    for record in [records.run, *records.iterations, *records.epochs, *records.events]:
        yield json.dumps(json_safe(record), allow_nan=False, separators=(",", ":"))


def write_jsonl(records: RunRecords, out: TextIO) -> int:
    """Write the JSON lines to `out`; returns how many."""
    count = 0
    for line in jsonl_lines(records):
        out.write(line + "\n")
        count += 1
    return count


def write_csv(records: RunRecords, folder: Path) -> dict[str, int]:
    """Write `CSV_FILES` into `folder` (made if missing); returns each file's row count. Empty cells
    are values that do not apply (an aggregate's loss) or are unknown (a run without validation)."""
    folder.mkdir(parents=True, exist_ok=True)
    epoch_columns: dict[str, None] = {}
    for row in records.epochs:
        epoch_columns.update(dict.fromkeys(row))
    events = [{**{k: e.get(k) for k in EVENT_COLUMNS},
               "details": json.dumps(json_safe({k: v for k, v in e.items() if k not in EVENT_COLUMNS}))}
              for e in records.events]
    tables = {"iterations.csv": (ITERATION_COLUMNS, records.iterations),
              "epochs.csv": (tuple(epoch_columns) or ("record", "epoch"), records.epochs),
              "events.csv": ((*EVENT_COLUMNS, "details"), events)}
    for name, (columns, rows) in tables.items():
        with open(folder / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return {name: len(rows) for name, (_columns, rows) in tables.items()}
