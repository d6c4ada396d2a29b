"""The real `trainmon` command in a real terminal (tmux): send keys, read the screen."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from engines import kill_engine, ls_json, row, run_info, start_detached, trainmon, wait_until
from tmux import needs_tmux

from trainmon.engine.control.client import RunClient

TRAINMON = str(Path(sys.executable).with_name("trainmon"))
pytestmark = [needs_tmux, pytest.mark.slow]
RESTORED = {"alternate_screen": False, "mouse": False, "cursor": True}
APPLICATION_MODE = {"alternate_screen": True, "mouse": True, "cursor": False}


def flat(screen: str) -> str:
    """The screen's words on one line (a long line wraps anywhere)."""
    return " ".join(screen.split())


def iteration(run_id: str) -> int:
    return row(run_id)["global_iteration"]


def wait_for_iterations_after(run_id: str, before: int, timeout: float = 60.0) -> int:
    return wait_until(lambda: (n := iteration(run_id)) > before and n, timeout=timeout,
                      what=f"run {run_id} to train past iteration {before}")


@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
def test_trainmon_in_a_real_terminal(tmux, size):
    t = tmux(f"{TRAINMON} --epochs 200", *size)
    screen = t.wait_for("RUNNING")
    for pane in ("Progress", "Gradient accumulation", "Devices", "Loss"):
        assert pane in screen
    t.wait_for("global iteration")
    t.keys("space")
    screen = t.wait_for("PAUSED")
    t.keys("+")
    screen = t.wait_for("batch size 32 → 64 at start of epoch")
    t.keys("?")
    screen = t.wait_for("What the numbers mean")
    assert "ceil(1437 / 32) = 45" in screen.replace("\n", " ") or "iterations per epoch" in screen
    t.keys("Escape")
    deadline = time.monotonic() + 10
    while "What the numbers mean" in t.screen() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "What the numbers mean" not in t.screen()
    t.keys("q")
    t.wait_for("Stop the run")  # q asks first (issue 26 item 11)
    t.keys("y")
    assert t.exit_code() == 0
    time.sleep(0.5)
    assert "\x1b[?1049h" not in t.screen()  # the alternate screen is gone: the terminal was restored
    # issue 26 item 10: while the engine starts (torch, the job) the terminal says so, not a blank screen
    assert "trainmon: starting engine for run " in flat(t.screen())


# ---- item 9: a signal ends the viewer, restores the terminal, and never the run --------------------


@pytest.mark.timeout(400)
def test_each_ending_signal_restores_the_terminal_and_the_run_trains_on(tmux):
    run_id, run_dir = start_detached("--epochs", "2000")
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
            t = tmux(f"{TRAINMON} attach {run_id}")
            t.wait_for("RUNNING", timeout=60)
            assert t.modes() == APPLICATION_MODE
            os.kill(t.program_pid(), signum)
            assert t.exit_code() == 128 + signum, signum.name
            assert t.modes() == RESTORED, signum.name
            assert f"this viewer ended on {signum.name}; run {run_id} goes on" in flat(t.screen())
            assert row(run_id)["status"] == "running"
        # every killed viewer's connection was dropped, and the engine never waited on one
        client = RunClient(run_info(run_dir)["socket"]).subscribe()
        try:
            wait_until(lambda: (client.poll(), client.latest is not None and client.viewers == 1)[1], timeout=30,
                       what="a viewer count of 1")
        finally:
            client.close()
        wait_for_iterations_after(run_id, iteration(run_id))
    finally:
        trainmon("stop", "--no-wait", run_id)
        kill_engine(run_dir)


# ---- item 10: the engine's death is on screen at once, with its signal -------------------------------


@pytest.mark.timeout(300)
def test_kill_9_of_the_engine_shows_the_signal_to_its_viewer_and_lost_to_an_attached_one(tmux):
    starter = tmux(f"{TRAINMON} --epochs 2000")
    starter.wait_for("RUNNING", timeout=90)
    [run] = ls_json()
    attached = tmux(f"{TRAINMON} attach {run['id']}")
    attached.wait_for("RUNNING", timeout=60)
    try:
        os.kill(run["pid"], signal.SIGKILL)
        # the reader thread sees the socket close at once, the next poll (4 Hz) says why
        said = starter.wait_for("killed by SIGKILL", timeout=30)
        assert "LOST the engine exited (killed by SIGKILL)" in flat(said)
        said = attached.wait_for("LOST", timeout=30)
        assert f"the engine of run {run['id']} died without a final event" in flat(said)
        assert "the run is lost" in flat(said)
    finally:
        kill_engine(Path(run["path"]))
    starter.keys("q")
    assert starter.exit_code() == 1
    assert "trainmon: run failed: the engine exited (killed by SIGKILL)" in flat(starter.screen())
    attached.keys("q")
    assert attached.exit_code() == 1
    assert row(run["id"])["status"] == "lost"


# ---- item 13: Ctrl+Z suspends the viewer; the run trains on ------------------------------------------


@pytest.mark.timeout(300)
def test_ctrl_z_suspends_the_viewer_and_fg_redraws_it_while_the_run_trains_on(tmux):
    run_id, run_dir = start_detached("--epochs", "2000")
    try:
        t = tmux("env PS1='prompt$ ' bash --norc --noprofile -i")
        t.wait_for("prompt$")
        t.keys(f"{TRAINMON} attach {run_id}", "Enter")
        t.wait_for("RUNNING", timeout=60)
        t.keys("C-z")
        screen = t.wait_for("Stopped")
        assert screen.rstrip().endswith("prompt$"), screen
        assert t.modes() == RESTORED
        suspended_at = iteration(run_id)
        wait_for_iterations_after(run_id, suspended_at)  # the engine is not the viewer: it trains on
        t.keys("fg", "Enter")
        t.wait_for("RUNNING", timeout=30)
        assert t.modes() == APPLICATION_MODE
        panes = ("Progress", "Gradient accumulation", "Devices", "Loss")  # every cell painted again (CI: the
        wait_until(lambda: all(pane in t.screen() for pane in panes), timeout=30,  # status line came a frame first)
                   what="every pane painted again")

        def shown_iteration() -> int:
            match = re.search(r"global iteration\s+(\d+)", t.screen())
            return int(match.group(1)) if match else 0

        wait_until(lambda: shown_iteration() > suspended_at, timeout=30, what="the counters to move on")
        t.keys("d")
        t.wait_for("detached from run")
    finally:
        trainmon("stop", "--no-wait", run_id)
        kill_engine(run_dir)


# ---- issue 26 item 16: a viewer the engine dropped while suspended comes back on fg ---------------------


@pytest.mark.timeout(300)
def test_a_viewer_dropped_while_suspended_reconnects_on_fg_and_shows_the_run(tmux):
    from trainmon.engine.core import messages as msg

    run_id, run_dir = start_detached("--epochs", "2000")
    watcher = None
    try:
        t = tmux("env PS1='prompt$ ' bash --norc --noprofile -i")
        t.wait_for("prompt$")
        t.keys(f"{TRAINMON} attach {run_id}", "Enter")
        t.wait_for("RUNNING", timeout=60)
        t.keys("C-z")
        t.wait_for("Stopped")
        socket_path = run_info(run_dir)["socket"]
        watcher = RunClient(socket_path).subscribe(steering=False)  # hears the steering viewers' count
        wait_until(lambda: (watcher.poll(), watcher.viewers == 1)[1], timeout=30, what="the suspended viewer counted")
        # what a long suspension does, in seconds: the viewer's backlog passes the engine's limit (8 MiB),
        # here with the answers to commands carrying 1 KB ids, broadcast to every viewer (small enough that
        # the engine's newest 5000 events, replayed on reconnecting, stay under the limit)
        flooder = RunClient(socket_path)
        for _ in range(9000):
            flooder.send(msg.StepOnce(id="x" * 1000))
        flooder.close()
        wait_until(lambda: (watcher.poll(), watcher.viewers == 0)[1], timeout=60, what="the engine to drop the viewer")
        seen = iteration(run_id)
        t.keys("fg", "Enter")
        screen = t.wait_for("RUNNING", timeout=30)
        wait_until(lambda: (watcher.poll(), watcher.viewers == 1)[1], timeout=30, what="the viewer to reconnect")

        def shown_iteration() -> int:
            match = re.search(r"global iteration\s+(\d+)", t.screen())
            return int(match.group(1)) if match else 0

        wait_until(lambda: shown_iteration() > seen, timeout=120, what=f"the counters to move on; screen:\n{t.screen()}")
        screen = flat(t.screen())
        assert "LOST" not in screen and "not applied" not in screen, screen  # no old toasts either
        t.keys("d")
        t.wait_for("detached from run")
    finally:
        if watcher is not None:
            watcher.close()
        trainmon("stop", "--no-wait", run_id)
        kill_engine(run_dir)
