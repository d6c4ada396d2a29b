"""Files replaced behind the loop: the caller never waits on the disk, the newest bytes win, a durable
write lands after everything queued, and an error reaches the caller."""

from __future__ import annotations

import json
import threading

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
