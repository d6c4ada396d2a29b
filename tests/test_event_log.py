"""The event log stays within its daily bytes at any rate, keeping what export and resume need.

A simulated day (an injected clock) of a job whose epochs come far faster than the budget pays for:
the bytes on disk stay under the day's budget, and what export rebuilds from the folded log (the
iteration → epoch / optimizer step / batch-size map, every epoch end counted, the newest whole)
equals what it rebuilds from a log that kept every line.
"""

from __future__ import annotations

import gzip
import math
import os
import stat
import threading

import pytest

from trainmon.engine.core import messages as msg
from trainmon.engine.core.report import event_line
from trainmon.engine.record.event_log import EventLog, log_bytes, read_events, segments
from trainmon.engine.record.export import StepMap, read_records
from trainmon.engine.record.rundir import RunDirectory, read_run


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def job_events(epochs: int, seconds: float, clock: Clock):
    """A faithful event stream: epochs of 45 iterations (last batch 29 of 1437 samples at b=32), accum 4
    (steps = ceil(45/4) = 12), an accumulation change mid-epoch 300, a batch-size change at epoch 700,
    a NaN loss every 50th epoch, a checkpoint per epoch; `seconds` of clock spread over it."""
    gi, gs, accum, bs, last_bs, n = 0, 0, 4, 32, 29, 45
    for epoch in range(1, epochs + 1):
        clock.now = seconds * (epoch - 1) / epochs
        if epoch == 700:
            yield msg.BatchSizeChanged(bs, 64, epoch, gi)
            bs, last_bs, n = 64, 29, 23
        yield msg.EpochStarted(epoch, epochs, bs, accum, n, last_bs, gi)
        start, steps = gi, 0
        if epoch == 300:  # 10 iterations in windows of 4 (3 steps: 4, 4, 2), then windows of 2 from there
            yield msg.AccumChanged(accum, 2, epoch, gi + 10)
            steps, start, accum = 3, gi + 10, 2
        if epoch % 50 == 0:
            yield msg.NonFiniteLoss(gi + 5, epoch, math.inf)  # inf == inf: lists compare
        clock.now += seconds / epochs / 2  # the epoch's end comes half an epoch's time later
        steps += math.ceil((gi + n - start) / accum)
        gi, gs = gi + n, gs + steps
        yield msg.EpochEnded(epoch, epochs, n, n, steps, gi * bs, 1.0 / epoch, 0.5, {"acc": 0.9}, bs, accum,
                             0.05, clock.now, gi, gs)
        yield msg.CheckpointSaved(f"/ckpt/{epoch}.pt", 1000, 0.01, "epoch end", epoch, n, gi, True)
    yield msg.Finished(False, epochs, gi, gs, gi * 32, seconds, 0.1, 0.5, {"acc": 0.9})


def write_log(folder, events, **options) -> None:
    log = EventLog(folder, **options)
    for seq, event in enumerate(events, 1):
        log.append(seq, event)
    log.close()


def step_map(records) -> StepMap:
    steps = StepMap()
    for _seq, event in records:
        steps.take(event)
    return steps


def test_a_day_of_fast_epochs_stays_in_budget_and_export_keeps_the_step_map(tmp_path):
    daily, epochs = 120_000, 3000  # ~0.6 KB a line, 3 lines an epoch, ~0.15 KB an epoch gzipped: 4× the day's bytes
    full, folded = tmp_path / "full", tmp_path / "folded"
    full.mkdir()
    folded.mkdir()
    clock = Clock()
    write_log(full, job_events(epochs, 86400.0, clock), daily_bytes=10**12, clock=clock, compress_inline=True)
    clock = Clock()
    write_log(folded, job_events(epochs, 86400.0, clock), daily_bytes=daily, segment_bytes=daily // 25,
              clock=clock, compress_inline=True)

    assert log_bytes(full) > 2 * daily  # the job does outrun the budget
    assert log_bytes(folded) <= daily
    kept, everything = list(read_events(folded)), list(read_events(full))
    summaries = [e for _s, e in kept if isinstance(e, msg.EventsSummarized)]
    assert summaries and len(kept) < len(everything) / 2
    # nothing that is not routine is ever folded: the changes, the end
    for kind in (msg.BatchSizeChanged, msg.AccumChanged, msg.Finished):
        assert [e for _s, e in kept if isinstance(e, kind)] == [e for _s, e in everything if isinstance(e, kind)]
    # every epoch end is either whole or counted in a summary; the newest folded one is whole
    whole = [e.epoch for _s, e in kept if isinstance(e, msg.EpochEnded)]
    assert len(whole) + sum(s.epochs_ended for s in summaries) == epochs
    assert sum(s.nonfinite for s in summaries) + sum(isinstance(e, msg.NonFiniteLoss) for _s, e in kept) == epochs // 50
    assert sum(s.checkpoints for s in summaries) + sum(isinstance(e, msg.CheckpointSaved) for _s, e in kept) == epochs
    seqs = [s for s, _e in kept]
    assert seqs == sorted(set(seqs))  # in order, no line twice
    # the iteration → epoch / step / batch size map is the same, iteration by iteration
    a, b = step_map(everything), step_map(kept)
    last = everything[-1][1].global_iteration
    for x in range(1, last + 1):
        assert (b.epoch_of(x), b.step_of(x), b.weight_of(x)) == (a.epoch_of(x), a.step_of(x), a.weight_of(x)), x
    assert b.steps_done == a.steps_done


def test_a_log_within_budget_keeps_every_line_as_it_came(tmp_path):
    clock = Clock()
    events = list(job_events(40, 400.0, clock))
    write_log(tmp_path, events, clock=clock)
    assert [e for _s, e in read_events(tmp_path)] == events
    assert os.listdir(tmp_path) == ["events.jsonl"]


def test_rotated_segments_are_gzip_private_and_read_in_order(tmp_path):
    clock = Clock()
    events = list(job_events(200, 10.0, clock))
    write_log(tmp_path, events, segment_bytes=20_000, daily_bytes=10**12, clock=clock, compress_inline=True)
    found = segments(tmp_path)
    assert len(found) >= 5 and all(name.endswith(".jsonl.gz") for _n, name in found)
    for _number, name in found:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
        assert gzip.decompress((tmp_path / name).read_bytes()).startswith(b'{"seq":')
    assert [e for _s, e in read_events(tmp_path)] == events
    assert [s for s, _e in read_events(tmp_path, after_seq=100)] == list(range(101, len(events) + 1))


def test_readers_see_each_line_once_while_the_writer_rotates_and_compresses(tmp_path):
    clock = Clock()
    events = list(job_events(600, 10.0, clock))
    log = EventLog(tmp_path, segment_bytes=8_000, daily_bytes=10**12, clock=clock)  # compression on its thread
    done = threading.Event()
    problems: list[str] = []

    def read_on() -> None:
        while not done.is_set():
            seqs = [s for s, _e in read_events(tmp_path)]
            if seqs != list(range(1, len(seqs) + 1)):
                problems.append(f"{len(seqs)} lines, not 1..n in order")

    reader = threading.Thread(target=read_on)
    reader.start()
    try:
        for seq, event in enumerate(events, 1):
            log.append(seq, event)
        log.close()
    finally:
        done.set()
        reader.join(timeout=60)
    assert not problems, problems[:3]
    assert [e for _s, e in read_events(tmp_path)] == events


def test_export_of_a_folded_run_has_the_summary_and_the_newest_epoch_whole(tmp_path):
    run = RunDirectory.create(tmp_path / "run", {"job": "fast"})
    clock = Clock()
    run._events = EventLog(run.path, daily_bytes=200_000, clock=clock)
    for seq, event in enumerate(job_events(600, 8640.0, clock), 1):
        run.append_event(seq, event)
    run.close()
    records = read_records(read_run(run.path))
    rows = [r for r in records.events if r["record"] == "events_summarized"]
    assert rows
    assert records.epochs[-1]["epoch"] == 600
    with_epochs = [r for r in rows if r["epochs_folded"]]
    assert len(records.epochs) + sum(r["epochs_folded"] for r in with_epochs) - len(with_epochs) == 600
    for r in rows:  # each summary's newest epoch is also an epoch row, at that epoch's step
        assert any(e["epoch"] == r["epoch"] and e["global_step"] == r["optimizer_step"] for e in records.epochs)
    line = event_line(next(e for _s, e in read_events(run.path) if isinstance(e, msg.EventsSummarized)))
    first, second = line.split("\n")
    assert first.startswith("events_summarized epochs=") and "epochs_folded=" in first
    assert second.startswith("epoch=")


@pytest.mark.parametrize("bad", [b'{"seq":3,"time":1.0,"event":{"type":"Paused"', b"not json", b""])
def test_a_torn_or_foreign_line_is_skipped(tmp_path, bad):
    write_log(tmp_path, [msg.Paused(1), msg.Resumed(2)])
    with open(tmp_path / "events.jsonl", "ab") as f:
        f.write(bad + b"\n")
    assert [s for s, _e in read_events(tmp_path)] == [1, 2]
