"""Several runs side by side, read from their run directories: which settings differ, the figures each
ended with (or stands at), and their loss curves. `trainmon compare` and the monitor's runs screen show
what this computes. No torch, no textual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.format import TABLE, count_of, duration, metric
from trainmon.engine.core.history import Point
from trainmon.engine.core.report import epochs_done
from trainmon.engine.core.run_config import resolved_config
from trainmon.engine.core.timeline import TimelineRow
from trainmon.engine.record.loss_archive import LossArchive
from trainmon.engine.record.rundir import RunInfo, read_events, read_loss, read_run, recorded_timeline

# run.json's settings in the order a table lists them; any other setting follows, sorted by name
SETTING_ORDER = ("job", "lr", "batch_size", "accum", "epochs", "seed", "batch_growth", "max_batch_size",
                 "drop_last", "precision", "clip_grad_norm", "num_workers", "val_batch_size", "device", "image_size")
MAX_OVERLAY = 8  # runs whose curves one chart overlays: past 8, colours and lines stop being told apart


def settings_of(info: dict[str, Any], snapshot: Optional[msg.Snapshot] = None) -> dict[str, Any]:
    """A run's settings from its run.json `info`: the job's name, the settings as given (`settings.options`,
    unset ones left out) overridden by those the engine resolved (`config`: the job's defaults filled in;
    a tracked loop's epochs, batch size, accumulation and lr from its `snapshot`). A batch size or accumulation
    the `snapshot` shows other than the start's reads `start → now`."""
    given = info.get("settings") or {}
    out: dict[str, Any] = {"job": info.get("job") or given.get("job")}
    for key in ("seed", "image_size"):
        if given.get(key) is not None:
            out[key] = given[key]
    out.update({k: v for k, v in (given.get("options") or {}).items() if v is not None})
    out.update({k: v for k, v in resolved_config(info, snapshot).items() if v is not None})
    for key in ("batch_size", "accum"):  # changed since the start (a viewer, a batch-growth rule): `32 → 64`
        start, now = out.get(key), getattr(snapshot, key, None)
        if start is not None and now and now != start:
            out[key] = f"{start} → {now}"
    return out


def differing(settings: list[dict[str, Any]]) -> list[str]:
    """The setting names whose values are not the same in every one of `settings` (a setting one run lacks
    differs from any value), SETTING_ORDER's first, then the others by name. `[]` for fewer than 2 runs."""
    if len(settings) < 2:
        return []
    names = {name for s in settings for name in s}
    differ = {name for name in names if len({repr(s.get(name)) for s in settings}) > 1}
    return [n for n in SETTING_ORDER if n in differ] + sorted(differ - set(SETTING_ORDER))


@dataclass
class RunFigures:
    """One run as a comparison shows it. Losses are sample-weighted epoch means (None: none yet, or none
    finite); `elapsed` is wall seconds since the run started; `val_points` are (global iteration, validation
    loss) at each epoch end; `train_points` the loss history (global iteration, loss), older parts averaged."""

    run: RunInfo
    settings: dict[str, Any]
    epochs_done: int = 0
    epochs: Optional[int] = None
    train_loss: Optional[float] = None
    val_loss: Optional[float] = None
    best_val_loss: Optional[float] = None
    val_metrics: dict[str, float] = field(default_factory=dict)
    elapsed: Optional[float] = None
    alerts: int = 0
    train_points: list[Point] = field(default_factory=list)
    val_points: list[Point] = field(default_factory=list)
    last_seq: int = 0  # the newest event read (a live run's next read starts after it)
    timeline: list[TimelineRow] = field(default_factory=list)  # timeline.json's rows (other x axes); [] if none
    epochs_ended: int = 0  # the newest EpochEnded's epoch since the last resume (events run ahead of the snapshot)

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def status(self) -> str:
        return self.run.status.value


def _finite(value: Optional[float]) -> Optional[float]:
    return value if value is not None and math.isfinite(value) else None


def read_figures(run: RunInfo, curves: bool = True, before: Optional[RunFigures] = None) -> RunFigures:
    """`run`'s figures from its snapshot and its events (`before`: the same run read earlier, whose events are
    not read again); with `curves`, its loss history from loss.json too. A run with no snapshot yet (just
    started) has zeros and Nones."""
    figures = RunFigures(run, settings_of(run.info, run.snapshot), alerts=int(run.info.get("alerts") or 0))
    if before is not None:
        figures.val_points, figures.last_seq = list(before.val_points), before.last_seq
        figures.epochs_ended = before.epochs_ended
        figures.train_loss, figures.val_metrics = before.train_loss, dict(before.val_metrics)
    for seq, event in read_events(run.path, figures.last_seq):
        figures.last_seq = seq
        if isinstance(event, msg.RunResumed):  # the epochs after the checkpoint ran again
            figures.val_points = [p for p in figures.val_points if p[0] <= event.global_iteration]
            figures.epochs_ended = 0
        if isinstance(event, msg.EpochEnded):
            figures.epochs_ended = event.epoch
            figures.train_loss = _finite(event.train_loss)
            figures.val_metrics = {k: v for k, v in event.val_metrics.items() if isinstance(v, (int, float))}
            if event.val_loss is not None:
                figures.val_points.append((float(event.global_iteration), event.val_loss))
    s = run.snapshot
    if s is not None:
        figures.epochs_done, figures.epochs, figures.elapsed = epochs_done(s), s.epochs or None, s.elapsed
        if figures.train_loss is None:
            figures.train_loss = _finite(s.epoch_loss)
        if not figures.val_metrics:
            figures.val_metrics = {k: v for k, v in s.val_metrics.items() if isinstance(v, (int, float))}
    # the snapshot is rewritten at publication and may lag the events just read: the table agrees with the chart
    figures.epochs_done = max(figures.epochs_done, figures.epochs_ended)
    finite_val = [y for _, y in figures.val_points if math.isfinite(y)]
    if figures.val_points:
        figures.val_loss = _finite(figures.val_points[-1][1])
    elif s is not None:
        figures.val_loss = _finite(s.val_loss)
    figures.best_val_loss = min(finite_val) if finite_val else (_finite(s.best_val_loss) if s is not None else None)
    if curves:
        loss = read_loss(run.path)
        figures.train_points = LossArchive.from_dict(loss).to_history().points() if loss else []
        figures.timeline = recorded_timeline(run.path).rows()  # [] for a run recorded without one
    return figures


class Comparison:
    """The runs at `paths`, read again by `refresh()`: a live run each time, an ended one once."""

    def __init__(self, paths: list[Path], curves: bool = True) -> None:
        self.paths, self.curves = [Path(p) for p in paths], curves
        self.runs: list[RunFigures] = []

    def refresh(self) -> list[RunFigures]:
        """Each run's figures now, in the order of `paths` (about a millisecond an ended run, once; a live
        one reads its snapshot, new events and loss.json). A run directory gone since is kept as last read."""
        before = {str(f.run.path): f for f in self.runs}
        fresh = []
        for path in self.paths:
            old = before.get(str(path.resolve()))
            if old is not None and not old.run.live:
                fresh.append(old)
                continue
            try:
                fresh.append(read_figures(read_run(path), self.curves, old))
            except (OSError, LookupError):
                if old is not None:
                    fresh.append(old)
        self.runs = fresh
        return fresh

    @property
    def live(self) -> bool:
        return any(f.run.live for f in self.runs)


def overlaid(runs: list[RunFigures]) -> list[int]:
    """The indexes into `runs` of those one chart overlays: all of them up to MAX_OVERLAY, else the newest
    MAX_OVERLAY by start (run.json's `started_unix`, then id: `trainmon ls`'s order), in `runs`' order."""
    if len(runs) <= MAX_OVERLAY:
        return list(range(len(runs)))
    by_start = sorted(range(len(runs)), key=lambda i: (runs[i].run.info.get("started_unix") or 0, runs[i].id))
    return sorted(by_start[-MAX_OVERLAY:])


def short_names(ids: list[str]) -> list[str]:
    """A column header per run id: its last `-` part (`20261207-061957-digits-7bd6` → `7bd6`) when those are
    all different, else the ids whole."""
    tails = [i.rsplit("-", 1)[-1] for i in ids]
    return tails if len(set(tails)) == len(tails) else list(ids)


def _setting_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def elapsed_text(value: Optional[float]) -> str:
    """`2.7s` under a minute, else `h:mm:ss` / `m:ss`; `—` unknown."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.1f}s" if value < 59.95 else duration(value)


def table_rows(runs: list[RunFigures]) -> list[tuple[str, list[str]]]:
    """The comparison table, a `(label, [one cell per run])` row each: the settings that differ, then
    epochs done, the final training loss, the final and best validation loss, each validation metric of
    the last epoch, the elapsed time (h:mm:ss) and the status. Numbers as every CLI table writes them."""
    settings = [f.settings for f in runs]
    rows = [(name, [_setting_text(s.get(name)) for s in settings]) for name in differing(settings)]
    rows.append(("epochs done", [count_of(f.epochs_done, f.epochs) for f in runs]))
    rows.append(("train loss", [metric(f.train_loss, TABLE) for f in runs]))
    rows.append(("val loss", [metric(f.val_loss, TABLE) for f in runs]))
    rows.append(("best val loss", [metric(f.best_val_loss, TABLE) for f in runs]))
    for name in dict.fromkeys(k for f in runs for k in f.val_metrics):
        rows.append((f"val {name}", [metric(f.val_metrics.get(name), TABLE) for f in runs]))
    rows.append(("elapsed", [elapsed_text(f.elapsed) for f in runs]))
    rows.append(("status", [f.status for f in runs]))
    return rows


def as_json(runs: list[RunFigures]) -> dict[str, Any]:
    """`trainmon compare --json`: `differing` (setting names) and per run its id, path, status, settings
    (all of them), `epochs_done`, `epochs`, the losses and `val_metrics` (null: none), `elapsed` (seconds)
    and `alerts`; curves are left out (loss.json holds them)."""
    return {
        "differing": differing([f.settings for f in runs]),
        "runs": [{"id": f.id, "path": str(f.run.path), "status": f.status, "settings": f.settings,
                  "epochs_done": f.epochs_done, "epochs": f.epochs, "train_loss": f.train_loss,
                  "val_loss": f.val_loss, "best_val_loss": f.best_val_loss, "val_metrics": f.val_metrics,
                  "elapsed": f.elapsed, "alerts": f.alerts} for f in runs],
    }
