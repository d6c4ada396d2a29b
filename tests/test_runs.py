"""Runs outlive their viewers: real engines, real viewers, real signals, and the run commands.

Processes only where a process is the point (signals, a closed terminal, a detached engine);
bad CLI input goes through click's CliRunner in-process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from engines import TRAINMON, kill_engine, ls_json, pid_gone, row, run_info, start_detached, trainmon, untimed, wait_until
from tmux import needs_tmux

from trainmon.cli.main import cli
from trainmon.engine.control import wire
from trainmon.engine.control.client import RunClient
from trainmon.engine.core import messages as msg
from trainmon.engine.record.rundir import RunDirectory, read_events, read_run

EPOCH = re.compile(r"^epoch=(\d+)/(\d+) ")


def viewer_pid(t) -> int:
    """The `trainmon` process in a tmux pane (the pane's shell's child; the engine is not in the pane)."""
    shell = psutil.Process(t.pane_pid())
    children = [p for p in shell.children() if "trainmon" in " ".join(p.cmdline()) and "daemon" not in p.cmdline()]
    assert len(children) == 1, [p.cmdline() for p in shell.children()]
    return children[0].pid


def subscribed(socket_path: str) -> RunClient:
    """A RunClient that has received its Welcome (so `latest`, `viewers` and the history are set)."""
    client = RunClient(socket_path).subscribe()
    events: list = []

    def welcomed():
        update = client.poll()
        events.extend(update.events)
        return client.latest is not None

    wait_until(welcomed, timeout=20, interval=0.05, what="the Welcome")
    client.welcome_events = events
    return client


def poll_until(client: RunClient, predicate, timeout: float = 30.0, what: str = "") -> list:
    """Poll `client` until `predicate(client.latest, events so far)`; every event seen."""
    events: list = []

    def probe():
        events.extend(client.poll().events)
        return predicate(client.latest, events)

    wait_until(probe, timeout=timeout, interval=0.05, what=what)
    return events


# ---- 1. a viewer's death never stops the run -------------------------------------------------


@pytest.mark.slow
@needs_tmux
@pytest.mark.timeout(240)
def test_engine_survives_a_closed_terminal_and_a_new_viewer_pauses_detaches_and_stops_it(tmux):
    t = tmux(f"{TRAINMON} --epochs 2000", 120, 30)
    t.wait_for("RUNNING", timeout=90)
    viewer = viewer_pid(t)
    [first] = ls_json()
    run_id = first["id"]
    assert first["status"] == "running" and first["epochs"] == 2000

    t.kill()  # the terminal closes: SIGHUP to the viewer
    wait_until(lambda: pid_gone(viewer), timeout=20, what="the viewer to exit on SIGHUP")
    before = row(run_id)
    assert before["status"] == "running"
    after = wait_until(lambda: (r := row(run_id))["global_step"] > before["global_step"] and r, timeout=20,
                       what="global_step to rise without a viewer")
    assert after["status"] == "running"

    t2 = tmux(f"{TRAINMON} attach", 120, 30)
    screen = t2.wait_for("RUNNING", timeout=60)
    assert run_id in screen
    t2.keys("space")
    t2.wait_for("PAUSED")
    paused = wait_until(lambda: (r := row(run_id))["status"] == "paused" and r, timeout=30, what="ls to say paused")
    t2.keys("d")
    assert t2.exit_code() == 0
    assert f"detached from run {run_id}" in t2.wait_for("detached from run").replace("\n", "")
    time.sleep(1.0)
    still = row(run_id)
    assert still["status"] == "paused" and still["global_iteration"] == paused["global_iteration"]

    stopped = trainmon("stop", timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("stopped epochs=")
    assert f"iterations={still['global_iteration']} " in stopped.stdout  # paused: no iteration ran since
    assert row(run_id)["status"] == "stopped"


@pytest.mark.slow
@needs_tmux
@pytest.mark.timeout(180)
def test_sigkill_of_a_viewer_leaves_the_run_running(tmux):
    run_id, run_dir = start_detached("--epochs", "2000")
    t = tmux(f"{TRAINMON} attach {run_id}", 120, 30)
    t.wait_for("RUNNING", timeout=60)
    viewer = viewer_pid(t)
    os.kill(viewer, signal.SIGKILL)
    assert t.exit_code() == 128 + signal.SIGKILL

    client = subscribed(run_info(run_dir)["socket"])
    try:
        start = client.latest.global_iteration
        poll_until(client, lambda s, _: s.global_iteration > start + 20, what="iterations after the viewer died")
        # the killed viewer's connection was dropped: only this client is subscribed now
        poll_until(client, lambda s, _: client.viewers == 1, timeout=30, what="a viewer count of 1")
        assert client.latest.status == msg.RUNNING
    finally:
        client.close()
    assert row(run_id)["status"] == "running"
    stopping = trainmon("stop", "--no-wait", run_id, timeout=60)
    assert (stopping.returncode, stopping.stdout) == (0, ""), stopping.stderr
    assert stopping.stderr == f"stopping run {run_id} after the current iteration\n"
    wait_until(lambda: row(run_id)["status"] == "stopped", timeout=30, what="the run to stop")


# ---- 2, 3. late and concurrent viewers ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_attach_after_detach_replays_the_run_from_its_start():
    run_id, run_dir = start_detached("--epochs", "400")
    wait_until(lambda: row(run_id)["global_iteration"] > 45, timeout=60, what="epoch 1 to end")
    client = subscribed(run_info(run_dir)["socket"])
    try:
        events = client.welcome_events
        points = client.loss_history.points()
        assert client.hello.run_id == run_id
        assert 1 <= points[0][0] <= 2  # the first point is iteration 1 (or 1 and 2 averaged)
        assert points[-1][0] >= 45
        assert isinstance(events[0], msg.EpochStarted) and (events[0].epoch, events[0].global_iteration) == (1, 0)
        ended = [e for e in events if isinstance(e, msg.EpochEnded)]
        assert (ended[0].epoch, ended[0].iterations, ended[0].global_iteration) == (1, 45, 45)
        assert ended[0].samples_seen == 1437
        # the log is written behind the loop (a writer thread): the socket may be an event or two ahead of it
        wait_until(lambda: len(list(read_events(run_dir))) >= len(events), timeout=30, what="the log to catch up")
        recorded = [event for _seq, event in read_events(run_dir)]
        assert recorded[: len(events)] == events  # the socket replays exactly what the log holds
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_viewers_see_one_pending_change_and_count_each_other():
    run_id, run_dir = start_detached("--epochs", "400")
    socket_path = run_info(run_dir)["socket"]
    a = subscribed(socket_path)
    b = subscribed(socket_path)
    try:
        assert b.viewers == 2
        poll_until(a, lambda s, _: a.viewers == 2, timeout=30, what="viewer a to count 2")
        a.send(msg.Pause())  # paused, the change stays pending until we resume
        poll_until(a, lambda s, _: s.status == msg.PAUSED, what="PAUSED")
        command_id = a.send(msg.SetBatchSize(64))
        seen_a = poll_until(a, lambda s, _: bool(s.pending), what="a pending change in viewer a")
        seen_b = poll_until(b, lambda s, _: bool(s.pending), what="a pending change in viewer b")
        assert a.latest.pending == b.latest.pending
        [change] = a.latest.pending
        epoch = a.latest.epoch
        assert (change.what, change.old, change.new, change.applies_at) == ("batch size", 32, 64,
                                                                            f"start of epoch {epoch + 1}")
        for events in (seen_a, seen_b):
            accepted = [e for e in events if isinstance(e, msg.CommandAccepted) and e.command.id == command_id]
            assert [e.command for e in accepted] == [msg.SetBatchSize(64, id=command_id)]
        a.send(msg.Resume())
        for client in (a, b):
            events = poll_until(client, lambda s, ev: any(isinstance(e, msg.BatchSizeChanged) for e in ev),
                                what="the change to apply")
            [changed] = [e for e in events if isinstance(e, msg.BatchSizeChanged)]
            assert (changed.old, changed.new, changed.epoch) == (32, 64, epoch + 1)
        a.close()
        poll_until(b, lambda s, _: b.viewers == 1, timeout=30, what="viewer b to count 1 after a left")
    finally:
        a.close()
        b.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_stop_is_not_confused_by_another_viewers_earlier_answer():
    """Every viewer's command answers are replayed to a late viewer: `stop` must match its own only
    (command ids used to be c1, c2... in every client, so an old rejection of c1 read as `stop`'s)."""
    run_id, run_dir = start_detached("--epochs", "2000")
    other = subscribed(run_info(run_dir)["socket"])
    try:
        command_id = other.send(msg.SetBatchSize(0))
        events = poll_until(other, lambda s, ev: any(isinstance(e, msg.CommandRejected) for e in ev),
                            what="the rejection")
        assert [e.command.id for e in events if isinstance(e, msg.CommandRejected)] == [command_id]
    finally:
        other.close()
    stopped = trainmon("stop", run_id, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stderr == f"stopping run {run_id} after the current iteration\n"
    assert stopped.stdout.startswith("stopped epochs=")
    assert row(run_id)["status"] == "stopped"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_headless_run_is_attachable_and_a_viewer_can_stop_it():
    headless = subprocess.Popen([TRAINMON, "--headless", "--epochs", "300"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        ident = re.match(r"^run id=(\S+) dir=(\S+) time=\S+$", headless.stdout.readline())
        assert ident
        run_id, run_dir = ident.group(1), Path(ident.group(2))
        assert run_info(run_dir)["pid"] == headless.pid
        client = subscribed(run_info(run_dir)["socket"])
        try:
            assert client.hello == wire.Hello(wire.PROTOCOL, run_id, headless.pid)
            start = client.latest.global_iteration
            poll_until(client, lambda s, _: s.global_iteration > start + 10, what="iterations")
            command_id = client.send(msg.Stop())
            events = poll_until(client, lambda s, ev: any(isinstance(e, msg.Finished) for e in ev),
                                what="the run to finish")
        finally:
            client.close()
        out, err = headless.communicate(timeout=60)
    finally:
        if headless.poll() is None:
            headless.kill()
            headless.wait()
    assert headless.returncode == 0, err
    assert [type(e) for e in events if getattr(getattr(e, "command", None), "id", None) == command_id] == [
        msg.CommandAccepted]
    [finished] = [e for e in events if isinstance(e, msg.Finished)]
    assert finished.stopped and finished.epochs_completed < 300
    assert out.splitlines()[-1].startswith(f"stopped epochs={finished.epochs_completed} "
                                           f"iterations={finished.global_iteration} ")
    assert row(run_id)["status"] == "stopped"


# ---- 4, 5. a dead engine, and who may read a run ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_of_the_engine_shows_as_lost():
    run_id, run_dir = start_detached("--epochs", "2000")
    pid = run_info(run_dir)["pid"]
    wait_until(lambda: row(run_id)["global_iteration"] > 45, timeout=60, what="epoch 1 to end")
    follow = subprocess.Popen([TRAINMON, "logs", "-f", run_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        time.sleep(2.0)  # logs -f is connected and following
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: pid_gone(pid), timeout=20, what="the engine to die")
        out, err = follow.communicate(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert follow.returncode == 0, err
    assert out.splitlines()[-1] == f"lost run={run_id} (the engine died without a final event)"

    lost = row(run_id)
    assert (lost["status"], lost["pid"]) == ("lost", pid)
    assert read_run(run_dir).info["status"] == "running"  # nobody wrote a final status
    logs = trainmon("logs", run_id)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert lines[-1] == f"lost run={run_id} (the engine died without a final event)"
    assert len(lines) >= 2 and all(EPOCH.match(line) or line.startswith("checkpoint_saved reason=\"epoch end\" ")
                                   for line in lines[:-1])


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigterm_to_the_detached_engine_stops_the_run_and_records_143():
    run_id, run_dir = start_detached("--epochs", "2000")
    pid = run_info(run_dir)["pid"]
    wait_until(lambda: row(run_id)["global_iteration"] > 45, timeout=60, what="epoch 1 to end")
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: pid_gone(pid), timeout=30, what="the engine to exit")
    ended = row(run_id)
    assert ended["status"] == "stopped"
    assert run_info(run_dir)["exit_code"] == 128 + signal.SIGTERM
    _seq, finished = list(read_events(run_dir))[-1]
    assert isinstance(finished, msg.Finished) and finished.stopped
    assert finished.global_iteration == ended["global_iteration"] >= 45
    last = trainmon("logs", run_id).stdout.splitlines()[-1]
    assert last.startswith(f"stopped epochs={finished.epochs_completed} iterations={finished.global_iteration} ")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_run_dir_too_long_for_a_socket_path_gets_its_socket_elsewhere(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    result = trainmon("--detach", "--job", "seed-example", "--epochs", "2000", "--run-dir", str(deep))
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    try:
        info = run_info(deep)
        assert info["id"] == run_id
        socket_path = Path(info["socket"])
        assert len(os.fsencode(str(socket_path))) <= 100 and socket_path.parent != deep
        assert stat.S_IMODE(os.stat(socket_path.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
        assert Path(row(run_id)["path"]).resolve() == deep  # ls finds it through its link
        client = subscribed(str(socket_path))
        assert client.hello.run_id == run_id and client.run_dir == str(deep)
        client.close()
        stopped = trainmon("stop", run_id, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        assert not socket_path.exists()  # the engine removed its socket on the way out
    finally:
        kill_engine(deep)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_run_directory_and_socket_are_owner_only():
    run_id, run_dir = start_detached("--job", "seed-example", "--epochs", "2000")
    try:
        socket_path = Path(run_info(run_dir)["socket"])
        wait_until(lambda: (run_dir / "events.jsonl").exists(), timeout=30, what="events.jsonl")
        mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731 - a one-line helper reads best beside its use
        assert mode(run_dir) == 0o700
        assert mode(run_dir.parent) == 0o700  # the runs folder
        assert mode(run_dir / "run.json") == 0o600
        assert mode(run_dir / "events.jsonl") == 0o600
        assert mode(run_dir / "output.log") == 0o600
        assert stat.S_ISSOCK(os.stat(socket_path).st_mode)
        assert mode(socket_path) == 0o600
    finally:
        kill_engine(run_dir)


@pytest.mark.slow
def test_the_status_comes_from_run_json_not_from_an_older_snapshot(trainmon_home):
    """The recorder rewrites run.json at each status change but snapshot.json only every ~2 s:
    a paused run read just after its pause used to show the snapshot's `running`."""
    path = fake_run(trainmon_home, "20260101-000000-digits-aaaa", "running")
    rundir = RunDirectory.open(path)
    rundir.update(host=os.uname().nodename)
    rundir.lock()  # as the engine holds it
    try:
        rundir.write_snapshot(msg.Snapshot(status=msg.RUNNING, epoch=3, epochs=9, global_iteration=100))
        rundir.update(status="paused")
        run = read_run(path)
        assert (run.status, run.snapshot.global_iteration) == (msg.PAUSED, 100)
        assert row("20260101-000000-digits-aaaa")["status"] == "paused"
    finally:
        os.close(rundir._lock_fd)
    assert read_run(path).status == msg.LOST  # and without its engine: lost


def test_last_activity_is_the_last_iteration_or_event_not_the_heartbeat(trainmon_home):
    """A loop stuck for 100 s: its heartbeat rewrote snapshot.json a moment ago, yet LAST ACTIVITY is the last
    iteration (the heartbeat's time less the iteration's age) or the last event, whichever is newer; a finished
    run's phase is its status."""
    from trainmon.engine.core.liveness import Liveness

    path = fake_run(trainmon_home, "20260101-000000-digits-aaaa", "finished")
    rundir = RunDirectory.open(path)
    now = time.time()
    rundir.write_snapshot(msg.Snapshot(status=msg.RUNNING, global_iteration=25, liveness=Liveness(
        phase="stalled", phase_seconds=99.0, iteration_age=100.0, beat=now)))
    os.utime(path / "run.json", (now - 300, now - 300))
    assert abs(read_run(path).last_activity - (now - 100)) < 1  # the iteration, not snapshot.json's write
    (path / "events.jsonl").write_text("")  # an event 0 s ago
    assert abs(read_run(path).last_activity - now) < 5
    code, out, _ = invoke("ls", "--json")
    [listed] = json.loads(out)
    assert (listed["phase"], listed["phase_seconds"]) == ("finished", None) and listed["iteration_age"] >= 100


def test_a_status_change_writes_the_snapshot_at_once(tmp_path):
    """Between the ~2 s flushes too: `ls` shows a pause with the iteration it paused at."""
    from trainmon.engine.core.history import HistoryDelta
    from trainmon.engine.record.recorder import Recorder
    from trainmon.engine.record.rundir import read_snapshot

    now = [0.0]
    rundir = RunDirectory.create(tmp_path / "run", {"id": "r"})
    recorder = Recorder(rundir, flush_every=2.0, clock=lambda: now[0])
    for t, status, iteration in ((0.0, msg.RUNNING, 1), (0.5, msg.RUNNING, 10), (0.6, msg.PAUSED, 12)):
        now[0] = t
        recorder.publish(msg.Snapshot(status=status, global_iteration=iteration), HistoryDelta(iteration, []))
        if iteration == 10:
            assert read_snapshot(rundir.path).global_iteration == 1  # within flush_every: not written
    snapshot = read_snapshot(rundir.path)
    assert (snapshot.status, snapshot.global_iteration) == (msg.PAUSED, 12)
    assert run_info(rundir.path)["status"] == "paused"
    recorder.close()


# ---- 7. logs and attach on runs that exist ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_logs_prints_the_headless_lines_of_a_run():
    headless = trainmon("--headless", "--job", "seed-example", "--epochs", "3")
    assert headless.returncode == 0, headless.stderr
    lines = headless.stdout.splitlines()
    ident = re.match(r"^run id=(\S+) dir=(\S+) time=\S+$", lines[0])
    assert ident, lines[0]
    run_id = ident.group(1)
    expected = [line for line in lines[1:] if not line.startswith("progress ")]
    epochs = [line for line in expected if EPOCH.match(line)]
    saves = [line for line in expected if line.startswith("checkpoint_saved ")]
    assert [EPOCH.match(line).group(1) for line in epochs] == ["1", "2", "3"]
    assert [re.search(r" epoch=(\d+) ", line).group(1) for line in saves] == ["1", "2", "3"]  # one per epoch end
    assert len(epochs) + len(saves) == len(expected) - 1
    assert expected[-1].startswith("finished epochs=3 ")

    logs = trainmon("logs", run_id)
    assert logs.returncode == 0, logs.stderr
    assert [untimed(line) for line in logs.stdout.splitlines()] == [untimed(line) for line in expected]
    assert row(run_id)["status"] == "finished"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_logs_follow_prints_new_lines_and_returns_when_the_run_ends():
    run_id, run_dir = start_detached("--epochs", "2000")
    wait_until(lambda: row(run_id)["global_iteration"] > 45, timeout=60, what="epoch 1 to end")
    follow = subprocess.Popen([TRAINMON, "logs", run_id, "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in follow.stdout), daemon=True)
    try:
        reader.start()
        in_log = sum(1 for _seq, event in read_events(run_dir) if isinstance(event, msg.EpochEnded))
        assert in_log >= 1  # logs -f starts from the log, then follows the socket
        live = f"epoch={in_log + 2}/"
        wait_until(lambda: any(line.startswith(live) for line in list(lines)), timeout=90,
                   what=f"{live} from logs -f")
        stopped = trainmon("stop", run_id, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        assert follow.wait(timeout=30) == 0, follow.stderr.read()
        reader.join(5)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    epochs = [int(EPOCH.match(line).group(1)) for line in lines if EPOCH.match(line)]
    assert epochs == list(range(1, len(epochs) + 1))  # every epoch once: the log, then the socket, no overlap
    assert len(epochs) >= in_log + 2
    assert untimed(lines[-1]) == stopped.stdout.strip()  # the same summary line `stop` printed
    assert lines[-1].startswith(f"stopped epochs={len(epochs)} ")


@pytest.mark.slow
async def test_attach_to_a_finished_run_is_read_only():
    from trainmon.engine.control.replay import RecordedRun
    from trainmon.tui.app import CONTROL_ACTIONS, TrainmonApp
    from trainmon.tui.widgets.status_pane import StatusPane

    headless = await _run_async(TRAINMON, "--headless", "--job", "seed-example", "--epochs", "2")
    run_id, path = re.match(r"^run id=(\S+) dir=(\S+) time=\S+$", headless.splitlines()[0]).groups()
    run = read_run(Path(path))
    assert run.status == msg.FINISHED
    app = TrainmonApp(RecordedRun(run), run_id=run_id)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause(0.5)
        status = str(app.query_one(StatusPane).render())
        assert "FINISHED" in status and run_id in status and "read-only" in status
        for action in sorted(CONTROL_ACTIONS) + ["detach"]:
            assert app.check_action(action, ()) is None, action
        assert app.snapshot.global_iteration == run.snapshot.global_iteration == 32  # 2 epochs of 16
        await pilot.press("space")
        await pilot.pause(0.3)
        assert app.snapshot.status == msg.FINISHED


async def _run_async(*argv: str) -> str:
    import asyncio

    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


# ---- 8. bad input to the run commands, in-process --------------------------------------------------


def fake_run(root: Path, run_id: str, status: str = "finished") -> Path:
    """A run directory as an ended run leaves it (no engine needed)."""
    rundir = RunDirectory.create(root / "runs" / run_id, {"id": run_id, "job": "digits", "pid": 1, "host": "here",
                                                          "socket": str(root / "gone.sock")})
    rundir.update(status=status)
    return rundir.path


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr.splitlines()


@pytest.mark.parametrize("command", ["attach", "logs", "stop"])
def test_unknown_run_exits_2_with_one_line(trainmon_home, command):
    fake_run(trainmon_home, "20260101-000000-digits-aaaa")
    code, out, err = invoke(command, "nope")
    assert (code, out) == (2, "")
    assert err == ["trainmon: error: no run matches 'nope' (see `trainmon ls`)"]


@pytest.mark.parametrize("command", ["attach", "logs", "stop"])
def test_ambiguous_prefix_names_the_matches(trainmon_home, command):
    fake_run(trainmon_home, "20260101-000000-digits-aaaa")
    fake_run(trainmon_home, "20260101-000000-digits-bbbb")
    fake_run(trainmon_home, "20260202-000000-digits-cccc")
    code, out, err = invoke(command, "20260101")
    assert (code, out) == (2, "")
    assert err == ["trainmon: error: '20260101' matches 2 runs: 20260101-000000-digits-aaaa, "
                   "20260101-000000-digits-bbbb"]


@pytest.mark.parametrize("status", ["finished", "stopped", "failed"])
def test_stop_of_an_ended_run_exits_2_and_says_why(trainmon_home, status):
    fake_run(trainmon_home, "20260101-000000-digits-aaaa", status)
    code, out, err = invoke("stop", "20260101-000000-digits-aaaa")
    assert (code, out) == (2, "")
    assert err == [f"trainmon: error: run 20260101-000000-digits-aaaa is {status}: no engine to talk to"]


def test_stop_without_a_live_run_exits_2(trainmon_home):
    fake_run(trainmon_home, "20260101-000000-digits-aaaa")
    code, out, err = invoke("stop")
    assert (code, out) == (2, "")
    assert err == [f"trainmon: error: no live run of yours under {trainmon_home / 'runs'}"]


def test_logs_without_any_run_exits_2(trainmon_home):
    code, out, err = invoke("logs")
    assert (code, out) == (2, "")
    assert err == [f"trainmon: error: no live run of yours under {trainmon_home / 'runs'} (no runs at all)"]


def test_a_lost_run_resolves_and_logs_say_so(trainmon_home):
    """A run.json still saying running with nobody holding engine.lock: lost, for ls and logs alike."""
    path = fake_run(trainmon_home, "20260101-000000-digits-aaaa", "running")
    RunDirectory.open(path).update(host=os.uname().nodename)
    code, out, err = invoke("logs", "20260101-000000-digits-aaaa")
    assert (code, err) == (0, [])
    assert out == "lost run=20260101-000000-digits-aaaa (the engine died without a final event)\n"
    code, out, err = invoke("stop", "20260101-000000-digits-aaaa")
    assert (code, err) == (2, ["trainmon: error: run 20260101-000000-digits-aaaa is lost: no engine to talk to"])
