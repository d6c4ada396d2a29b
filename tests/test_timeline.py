"""Issue 24 items 3-4, the engine's side: the timeline's rows, bounded and versioned; the loss mapped to another
axis by interpolation between rows; timeline.json written by the recorder and read back for a finished run."""

from __future__ import annotations

import json

import pytest

from trainmon.engine.control.channel import Channel
from trainmon.engine.control.replay import RecordedRun, recorded_timeline
from trainmon.engine.core import messages as msg
from trainmon.engine.core.device_samples import DeviceSample, GpuSample, HostSample
from trainmon.engine.core.history import HistoryDelta
from trainmon.engine.core.liveness import Liveness
from trainmon.engine.core.timeline import Timeline, TimelineRow, timeline_row, to_axis
from trainmon.engine.record.recorder import Recorder
from trainmon.engine.record.rundir import TIMELINE_FILE, RunDirectory, read_run


def row(g: int, **fields) -> TimelineRow:
    """A run at global iteration g of batches of 32, 3 accumulation steps, 0.1 s an iteration."""
    base = dict(global_step=g // 3, samples_seen=32 * g, active_seconds=0.1 * g, wall=1000.0 + 0.1 * g)
    base.update(fields)
    return TimelineRow(g, **base)


def test_a_row_takes_the_snapshots_figures():
    devices = DeviceSample(1.0, (GpuSample(0, memory_used_mib=1234.0),), HostSample(process_rss_mib=456.0), True)
    s = msg.Snapshot(global_iteration=90, global_step=30, samples_seen=2874, active_seconds=1.5, lr=0.05,
                     learning_rates=(0.05, 0.01), grad_norm=2.5, samples_per_second=1900.0, devices=devices,
                     liveness=Liveness(data_wait=0.125))
    assert timeline_row(s, 1.7e9, tokens=1e4) == TimelineRow(90, 30, 2874, 1.5, 1.7e9, (0.05, 0.01), 2.5, 1900.0,
                                                             0.125, 1234.0, 456.0, 1e4)
    bare = timeline_row(msg.Snapshot(global_iteration=3, lr=0.1), 5.0)  # no telemetry, no liveness, one rate
    assert (bare.learning_rates, bare.device_mib, bare.host_mib, bare.data_wait, bare.tokens) == ((0.1,), None, None,
                                                                                               None, None)


def test_a_long_run_stays_bounded_and_its_rows_stay_exact():
    timeline = Timeline(capacity=64)
    rows = [row(g) for g in range(1, 100_001)]
    timeline.extend(rows)
    kept = timeline.rows()
    assert len(kept) <= 65 and timeline.version == 100_000
    assert kept[0] == rows[0] and kept[-1] == rows[-1]  # the first and the newest always
    assert set(kept) <= set(rows)  # thinned, never averaged: every row is one the run published
    gaps = {b.global_iteration - a.global_iteration for a, b in zip(kept, kept[1:-1])}
    assert max(gaps) <= 2 * min(gaps)  # evenly thinned, at two resolutions at most (the older rows coarser)


def test_a_paused_run_adds_no_row_until_it_moves():
    timeline = Timeline()
    assert timeline.append(row(5)) and not timeline.append(row(5, active_seconds=9.0)) and timeline.append(row(6))
    assert [r.global_iteration for r in timeline.rows()] == [5, 6]


def test_a_viewer_keeps_up_by_deltas_and_gets_the_whole_series_when_behind():
    producer, viewer = Timeline(capacity=64, recent=16), Timeline(capacity=64)
    for g in range(1, 11):
        producer.append(row(g))
        viewer.apply(producer.since(viewer.version))
    assert viewer.rows() == producer.rows() and viewer.version == 10
    delta = producer.since(10)
    assert (delta.rows, delta.reset) == ([], False)
    producer.extend([row(g) for g in range(11, 200)])  # more than the ring: a reset with the thinned series
    delta = producer.since(viewer.version)
    assert delta.reset
    viewer.apply(delta)
    assert viewer.rows() == producer.rows() and viewer.version == producer.version


def test_state_round_trip_and_truncate_at_a_resume():
    timeline = Timeline(capacity=16)
    timeline.extend([row(g) for g in range(1, 100)])
    copy = Timeline(capacity=16)
    copy.load_state_dict(json.loads(json.dumps(timeline.state_dict())))
    assert copy.rows() == timeline.rows() and copy.version == timeline.version
    copy.truncate(50)
    assert copy.rows() == [r for r in timeline.rows() if r.global_iteration <= 50]
    last = copy.last().global_iteration
    assert last <= 50 and not copy.append(row(last)) and copy.append(row(51))


ROWS = [row(10), row(20, global_step=5, samples_seen=600, active_seconds=3.0), row(40, global_step=15,
                                                                                   samples_seen=1000)]


@pytest.mark.parametrize("axis, xs, expected", [
    ("iteration", [1, 10, 33], [1, 10, 33]),
    # exact at the rows, a straight line between them, from 0 before the first, the last slope past the newest
    ("step", [10, 20, 40, 15, 30, 5, 0, 50], [3, 5, 15, 4, 10, 1.5, 0, 20]),
    ("samples", [10, 15, 20, 30, 40, 60], [320, 460, 600, 800, 1000, 1400]),
    ("active", [10, 20, 25, 40], [1.0, 3.0, 3.25, 4.0]),
    ("tokens", [10, 20], [None, None]),  # a job that counts no tokens
])
def test_a_global_iteration_maps_to_another_axis_by_interpolation(axis, xs, expected):
    assert to_axis(xs, ROWS, axis) == pytest.approx(expected)


def test_no_rows_no_other_axis():
    assert to_axis([1.0, 2.0], [], "step") == [None, None]
    assert to_axis([1.0, 2.0], [], "iteration") == [1.0, 2.0]
    with pytest.raises(ValueError, match="axis must be one of"):
        to_axis([1.0], ROWS, "epochs")


def test_the_channel_carries_rows_to_its_viewer_and_its_sinks(tmp_path):
    rundir = RunDirectory.create(tmp_path / "run", {"id": "r1", "job": "digits"})
    recorder = Recorder(rundir)
    channel = Channel(sinks=[recorder])
    timeline = Timeline()
    for g in range(1, 6):
        timeline.append(row(g))
        channel.publish(msg.Snapshot(global_iteration=g), HistoryDelta(g, [(g, 1.0 / g)]), timeline.since(g - 1))
    channel.poll()
    assert channel.timeline.rows() == timeline.rows() == recorder.timeline.rows()
    recorder.finish(msg.FINISHED)
    rundir.close()
    assert recorded_timeline(rundir.path).rows() == timeline.rows()
    assert RecordedRun(read_run(rundir.path)).timeline.rows() == timeline.rows()


def test_timeline_json_stays_bounded_however_long_the_run(tmp_path):
    rundir = RunDirectory.create(tmp_path / "run", {"id": "r2", "job": "digits"})
    recorder = Recorder(rundir)
    producer = Timeline()
    for start in range(0, 50_000, 500):  # 50,000 publications, 500 rows a delta
        version = producer.version
        producer.extend([row(g) for g in range(start + 1, start + 501)])
        recorder.publish_timeline(producer.since(version))
    recorder.finish(msg.FINISHED)
    rundir.close()
    data = json.loads((rundir.path / TIMELINE_FILE).read_text())
    assert len(data["rows"]) <= producer.capacity + 1 and data["version"] == 50_000
    assert (tmp_path / "run" / TIMELINE_FILE).stat().st_size < 400_000
    back = recorded_timeline(rundir.path)
    assert back.rows()[0] == row(1) and back.rows()[-1] == row(50_000)


def test_a_run_without_timeline_json_reads_back_empty(tmp_path):
    rundir = RunDirectory.create(tmp_path / "run", {"id": "r3", "job": "digits"})
    assert len(recorded_timeline(rundir.path)) == 0
    (rundir.path / TIMELINE_FILE).write_text('{"rows": [["not", "a row"]]}')
    assert len(recorded_timeline(rundir.path)) == 0  # unreadable: nothing, never an error
