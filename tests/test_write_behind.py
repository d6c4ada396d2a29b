"""Files replaced behind the loop: the caller never waits on the disk, the newest bytes win, a durable
write lands after everything queued, and an error reaches the caller."""

from __future__ import annotations

import json
import threading
import time

import pytest

from trainmon.engine.record.rundir import RUN_FILE, RunDirectory, write_atomic
from trainmon.engine.record.write_behind import WriteBehind


def test_submit_returns_while_the_disk_is_slow_and_the_newest_bytes_win(tmp_path):
    gate, written = threading.Event(), []

    def slow_write(path, data):
        gate.wait(10)
        written.append(data)
        write_atomic(path, data)

    behind = WriteBehind(slow_write)
    target = tmp_path / "f"
    behind.submit(target, b"1")  # the thread takes it and waits on the gate
    for n in range(2, 50):
        behind.submit(target, str(n).encode())  # returns at once though the disk is "stuck"
    assert written == []
    gate.set()
    behind.drain()
    assert target.read_bytes() == b"49"
    assert written[-1] == b"49" and len(written) <= 2  # at most "1" (if the thread took it first), then "49"
    behind.close()


def test_an_error_on_the_thread_reaches_the_next_call(tmp_path):
    behind = WriteBehind(write_atomic)
    behind.submit(tmp_path / "missing-folder" / "f", b"x")
    with pytest.raises(FileNotFoundError):
        behind.drain()
    behind.submit(tmp_path / "ok", b"y")  # later files are still written
    behind.drain()
    assert (tmp_path / "ok").read_bytes() == b"y"
    behind.close()


def test_a_durable_write_lands_after_what_was_queued(tmp_path):
    run = RunDirectory.create(tmp_path / "run", {"job": "j"})
    run.write_behind()
    for n in range(200):
        run.update(status="running", n=n)
    run.update(durable=True, status="finished", n=-1)
    run.close()
    info = json.loads((run.path / RUN_FILE).read_text())
    assert (info["status"], info["n"]) == ("finished", -1)


def test_calls_run_in_order_in_batches_and_a_drain_runs_them_at_once(tmp_path):
    """The event log's appends go to the thread without waking it per event (a batch every `batch_delay`
    or `batch_size` calls); a drain runs what is queued at once, in the order given."""
    seen, threads = [], set()

    def record(n):
        seen.append(n)
        threads.add(threading.get_ident())

    behind = WriteBehind(write_atomic, batch_delay=60.0, batch_size=1000)
    for n in range(10):
        behind.call(record, n)
    assert seen == []  # queued: the thread was not woken for them (a 60 s batch delay)
    behind.drain(timeout=10)
    assert seen == list(range(10)) and threads == {behind._thread.ident}
    for n in range(10, 1010):
        behind.call(record, n)  # the 1000th queued call wakes the thread without a drain
    for _ in range(100):
        if len(seen) == 1010:
            break
        threading.Event().wait(0.05)
    assert seen == list(range(1010))
    behind.close()


def test_events_are_stamped_when_emitted_and_written_before_a_final_status(tmp_path):
    from trainmon.engine.core import messages as msg
    from trainmon.engine.record.event_log import read_timed_events

    run = RunDirectory.create(tmp_path / "run", {"job": "j"})
    run.write_behind()
    before = time.time()
    for seq in range(1, 6):
        run.append_event(seq, msg.Warned(f"w{seq}"))
    stamped = time.time()
    time.sleep(0.3)  # written later, on the thread: the stamp is still the emission's
    run.update(durable=True, status="finished")
    records = list(read_timed_events(run.path))
    assert [(seq, event.message) for seq, _, event in records] == [(n, f"w{n}") for n in range(1, 6)]
    assert all(before - 0.001 <= when <= stamped + 0.001 for _, when, _ in records)
    run.close()
