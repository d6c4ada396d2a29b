"""Issue 26 item 16: a viewer the engine dropped while it was suspended (Ctrl+Z: it stopped reading, its
backlog passed the engine's limit) connects again when it runs on, and sees the run as it is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from engines import kill_engine, run_info, start_detached, trainmon, wait_until

from trainmon.engine.control.client import RunClient
from trainmon.engine.core import messages as msg

VIEWER = """
import sys, time
from trainmon.engine.control.client import RunClient
c = RunClient(sys.argv[1]).subscribe()
while True:
    c.poll()
    print(c.latest.global_iteration if c.latest else 0, getattr(c, "reconnects", 0), int(c.alive), flush=True)
    time.sleep(0.2)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_viewer_dropped_while_stopped_reconnects_and_follows_the_run(tmp_path):
    run_id, run_dir = start_detached("--epochs", "2000")
    log = tmp_path / "viewer.log"
    viewer = watcher = None
    try:
        socket_path = run_info(run_dir)["socket"]
        with open(log, "w") as out:
            viewer = subprocess.Popen([sys.executable, "-c", VIEWER, socket_path], stdout=out, stderr=subprocess.STDOUT)

        def lines() -> list[tuple[int, ...]]:  # (global iteration, reconnections, alive) a line, 5 a second
            return [tuple(map(int, line.split())) for line in log.read_text().splitlines() if line.strip()]

        wait_until(lambda: lines() and lines()[-1][0] > 0, timeout=60, what="the viewer to see the run")
        os.kill(viewer.pid, signal.SIGSTOP)  # what Ctrl+Z does to it: it stops reading
        watcher = RunClient(socket_path).subscribe(steering=False)  # hears the steering viewers' count
        wait_until(lambda: (watcher.poll(), watcher.viewers == 1)[1], timeout=30, what="the stopped viewer counted")
        # a long suspension in seconds: the answers to commands with 1 KB ids, broadcast to every viewer,
        # pass the engine's backlog limit (8 MiB) for the stopped one
        flooder = RunClient(socket_path)
        for _ in range(9000):
            flooder.send(msg.StepOnce(id="x" * 1000))
        flooder.close()
        wait_until(lambda: (watcher.poll(), watcher.viewers == 0)[1], timeout=60, what="the engine to drop the viewer")
        seen = watcher.latest.global_iteration
        os.kill(viewer.pid, signal.SIGCONT)  # fg
        wait_until(lambda: (watcher.poll(), watcher.viewers == 1)[1], timeout=30, what="the viewer to connect again")
        wait_until(lambda: lines()[-1][0] > seen and lines()[-1][1] == 1, timeout=60, what="the viewer to follow on")
        assert all(alive == 1 for _, _, alive in lines())  # never seen as gone (LOST)
    finally:
        for process in (viewer,):
            if process is not None:
                process.kill()
                process.wait(10)
        if watcher is not None:
            watcher.close()
        trainmon("stop", "--no-wait", run_id)
        kill_engine(run_dir)
