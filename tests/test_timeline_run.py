"""Issue 24 items 3-4 on real digits runs: the timeline's rows hold the run's exact counts, its active time leaves
a pause out, timeline.json is read back for an ended run, and a resumed run keeps its timeline."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from engines import trainmon, wait_until

from trainmon.engine.control.channel import Channel
from trainmon.engine.control.replay import RecordedRun, recorded_timeline
from trainmon.engine.core import messages as msg
from trainmon.engine.record.rundir import read_run

pytestmark = pytest.mark.slow  # real training: seconds each

PER_EPOCH, SAMPLES = 45, 1437  # the digits set at batch size 32: 44 batches of 32 and one of 29


def headless(*args: str) -> Path:
    result = trainmon("--headless", *args, timeout=300)
    assert result.returncode == 0, result.stderr
    return Path(re.match(r"^run id=\S+ dir=(\S+) time=\S+$", result.stdout.splitlines()[0]).group(1))


def expected(g: int, k: int) -> tuple[int, int]:
    """(optimizer steps, samples seen) after global iteration g of the digits job in windows of k | 45."""
    epochs, i = divmod(g, PER_EPOCH)
    return epochs * PER_EPOCH // k + i // k, epochs * SAMPLES + 32 * i


@pytest.mark.timeout(300)
def test_a_digits_runs_rows_hold_its_exact_counts_and_are_read_back():
    run_dir = headless("--epochs", "2", "--accum", "3")
    rows = recorded_timeline(run_dir).rows()
    assert len(rows) >= 3 and rows[-1].global_iteration == 2 * PER_EPOCH
    for r in rows:
        assert (r.global_step, r.samples_seen) == expected(r.global_iteration, 3), r
        assert r.learning_rates == (0.05,) and r.host_mib is not None and r.host_mib > 0
    its = [r.global_iteration for r in rows]
    assert its == sorted(set(its))
    assert all(b.active_seconds >= a.active_seconds and b.wall >= a.wall for a, b in zip(rows, rows[1:]))
    assert RecordedRun(read_run(run_dir)).timeline.rows() == rows  # `attach` on the ended run: the same rows


@pytest.mark.timeout(300)
def test_active_time_leaves_a_pause_out(thread_run):
    from trainmon.engine.jobs.run_setup import prepare_run
    from trainmon.engine.run.trainer import Trainer

    _spec, job, config, _warnings = prepare_run("digits", None, 0, epochs=4, accum=5)
    channel = Channel()
    run = thread_run(Trainer(job, config, channel))
    wait_until(lambda: channel.poll().snapshot is not None and channel.latest.global_iteration > 10, timeout=60,
               interval=0.02, what="ten iterations")
    channel.send(msg.Pause())
    wait_until(lambda: channel.poll().snapshot is not None and channel.latest.status == msg.PAUSED, timeout=30,
               interval=0.02, what="the pause")
    time.sleep(1.5)
    channel.send(msg.Resume())
    run.thread.join(timeout=120)
    channel.poll()
    rows = channel.timeline.rows()
    assert rows[-1].global_iteration == 4 * PER_EPOCH
    for r in rows:
        assert (r.global_step, r.samples_seen) == expected(r.global_iteration, 5), r
    # the pause lies between two rows: 1.5 s more of wall time than of active time there
    gaps = [(b.wall - a.wall) - (b.active_seconds - a.active_seconds) for a, b in zip(rows, rows[1:])]
    assert max(gaps) >= 1.4 and sorted(gaps)[-2] < 0.5
    assert rows[-1].wall - rows[0].wall - (rows[-1].active_seconds - rows[0].active_seconds) >= 1.4


@pytest.mark.timeout(400)
def test_a_resumed_run_keeps_its_timeline():
    run_dir = headless("--epochs", "1", "--accum", "3")
    before = recorded_timeline(run_dir).rows()
    assert before[-1].global_iteration == PER_EPOCH
    result = trainmon("resume", "--headless", str(run_dir), "--epochs", "2", timeout=300)
    assert result.returncode == 0, result.stderr
    after = recorded_timeline(run_dir).rows()
    assert after[: len(before)] == before  # the first session's rows, as recorded
    assert after[-1].global_iteration == 2 * PER_EPOCH and len(after) > len(before)
    for r in after:
        assert (r.global_step, r.samples_seen) == expected(r.global_iteration, 3), r
    resumed = after[len(before)]
    assert resumed.active_seconds >= before[-1].active_seconds  # active time goes on from the checkpoint's
