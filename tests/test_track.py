"""`trainmon.track()`: a hand-written loop recorded as a run — counts against the loop's own, losses, changes
the loop takes or refuses, and real processes steered over the socket (`trainmon exec`, nohup-style)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from engines import ls_json, wait_until
from engines import trainmon as run_cli
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainmon
from trainmon.engine.control.client import RunClient
from trainmon.engine.core import messages as msg
from trainmon.engine.core.arithmetic import iterations_per_epoch, window_sizes
from trainmon.engine.record.rundir import read_events, read_loss, read_run

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(120)


def digits(samples: int = 300):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data[:samples], dtype=torch.float32) / 16.0
    y = torch.tensor(data.target[:samples])
    return TensorDataset(x, y)


def events_of(run: trainmon.Run, kind: type) -> list:
    return [event for _, event in read_events(run.tracker.run_path) if isinstance(event, kind)]


@pytest.mark.parametrize("samples,batch_size,accum,drop_last", [
    (300, 32, 4, False),  # 10 iterations, the last of 12 samples; windows [4, 4, 2]
    (300, 32, 3, True),   # 9 iterations; windows [3, 3, 3]
    (100, 8, 5, False),   # 13 iterations; windows [5, 5, 3]
])
def test_counts_equal_the_loops_own(samples, batch_size, accum, drop_last):
    """Iterations, optimizer steps, samples and the epoch's sample-weighted loss equal what the loop itself
    counted; the short window, stepped after the inner loop (outside any iteration), counts in its epoch."""
    torch.manual_seed(0)
    data = digits(samples)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=drop_last)
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    own = {"iterations": 0, "steps": 0, "samples": 0, "losses": []}
    epochs = 2
    run = trainmon.track(optimizer, accum=accum)
    for _ in run.epochs(epochs):
        for i, (x, y) in enumerate(run.batches(loader)):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            own["iterations"] += 1
            own["samples"] += len(y)
            own["losses"].append((loss.item(), len(y)))
            if (i + 1) % accum == 0:
                optimizer.step()
                optimizer.zero_grad()
                own["steps"] += 1
            run.log(loss)
        if len(loader) % accum:  # the short window: stepped after the loop, as many loops do
            optimizer.step()
            optimizer.zero_grad()
            own["steps"] += 1
    n = iterations_per_epoch(samples, batch_size, drop_last)
    ended = events_of(run, msg.EpochEnded)
    assert [(e.epoch, e.iterations, e.iterations_planned, e.steps) for e in ended] == \
        [(t, n, n, len(window_sizes(n, accum))) for t in (1, 2)]
    finished = events_of(run, msg.Finished)[-1]
    assert (finished.global_iteration, finished.global_step, finished.samples_seen) == \
        (own["iterations"], own["steps"], own["samples"])
    assert not finished.stopped and finished.epochs_completed == epochs
    last_epoch = own["losses"][n:]
    mean = sum(v * w for v, w in last_epoch) / sum(w for _, w in last_epoch)
    assert finished.train_loss == pytest.approx(mean, rel=1e-6)
    recorded = read_loss(run.tracker.run_path)
    assert recorded is not None
    info = read_run(run.tracker.run_path)
    assert info.status == msg.FINISHED and info.snapshot.global_step == own["steps"]
    assert info.snapshot.batch_size_off and info.snapshot.accum_off  # never read: the keys are dimmed


def test_windows_follow_the_loops_steps():
    """The window position the snapshot shows is the micro-batches since the loop's last step."""
    torch.manual_seed(0)
    loader = DataLoader(digits(80), batch_size=8)
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    run = trainmon.track(optimizer, accum=3)
    run.tracker.publish_interval = 0.0  # every iteration publishes: the test reads each position
    run.tracker.channel.sinks.append(type("S", (), {"publish": lambda self, s, d: seen.append(
        (s.global_iteration, s.window_position, s.window_size, s.global_step)), "emit": lambda self, e: None,
        "close": lambda self: None})())
    for _ in run.epochs(1):
        for x, y in run.batches(loader):
            nn.functional.cross_entropy(model(x), y).backward()
            if run.window_end:
                optimizer.step()
                optimizer.zero_grad()
    positions = {it: (pos, size, steps) for it, pos, size, steps in seen if it}
    # 10 iterations, k = 3: windows [3, 3, 3, 1]; after a step the window that comes is shown (issue 21
    # item 4: after the 9th, the last window holds 1 micro-batch, not "next in 3")
    assert [positions[it] for it in range(1, 11)] == [
        (1, 3, 0), (2, 3, 0), (0, 3, 1), (1, 3, 1), (2, 3, 1), (0, 3, 2), (1, 3, 2), (2, 3, 2), (0, 1, 3), (0, 1, 4)]


def test_batch_size_and_accum_changes_apply_where_the_loop_reads_them():
    """A loop that builds its loader with `run.loader` and steps at `run.window_end` takes a viewer's new batch
    size at the next epoch and new accumulation steps at the next window; the keys are live."""
    torch.manual_seed(0)
    data = digits(200)
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="give trainmon.track\\(batch_size=...\\)"):
        _ = trainmon.track(optimizer, accum=2).batch_size
    run = trainmon.track(optimizer, accum=2, batch_size=32)
    sizes, steps_at = [], []
    for epoch in run.epochs(3):
        loader = run.loader(data, shuffle=True)
        for i, (x, y) in enumerate(run.batches(loader)):
            sizes.append((epoch, len(y)))
            nn.functional.cross_entropy(model(x), y).backward()
            if run.window_end:
                optimizer.step()
                optimizer.zero_grad()
                steps_at.append(run.tracker.progress.global_iteration + 1)
            if epoch == 0 and i == 2:
                run.tracker.channel.send(msg.SetBatchSize(64))  # as a viewer's `b 64`
                run.tracker.channel.send(msg.SetAccum(3))  # from the next window
    assert [s for e, s in sizes if e == 1] == [64, 64, 64, 8]
    assert events_of(run, msg.BatchSizeChanged)[0].new == 64
    assert events_of(run, msg.AccumChanged)[0].new == 3
    ended = events_of(run, msg.EpochEnded)
    # epoch 1: 7 iterations at 32, windows [2, 2(→ the change), ...]: k = 3 from the window after iteration 4
    assert ended[0].iterations == 7 and ended[0].steps == 3  # windows [2, 2, 3]
    assert ended[1].iterations == 4 and ended[1].steps == 2 and ended[1].batch_size == 64  # windows [3, 1]
    assert not [e for e in events_of(run, msg.CommandRejected)]


def test_changes_a_loop_never_reads_are_refused_with_the_reason():
    torch.manual_seed(0)
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer)
    for _ in run.epochs(1):
        for i, (x, y) in enumerate(run.batches(DataLoader(digits(64), batch_size=16))):
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
            if i == 0:
                run.tracker.channel.send(msg.SetBatchSize(32))
                run.tracker.channel.send(msg.SetAccum(2))
    reasons = [e.reason for e in events_of(run, msg.CommandRejected)]
    assert reasons == ["this loop never reads run.batch_size: it cannot take a new batch size",
                       "this loop never reads run.accum: it cannot take new accumulation steps"]


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="accum must be a whole number >= 1, not 0"):
        trainmon.track(accum=0)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, not str"):
        trainmon.track("adam")


@pytest.mark.slow
def test_import_trainmon_loads_neither_torch_nor_textual():
    code = "import sys, trainmon; print('torch' in sys.modules, 'textual' in sys.modules, callable(trainmon.track))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.split()
    assert out == ["False", "False", "True"]


# ---------------------------------------------------------------------------------------------
# real processes
# ---------------------------------------------------------------------------------------------
SCRIPT = ROOT / "examples" / "own_loop.py"


def start_exec(*args: str) -> str:
    result = run_cli("exec", "--detach", "--", sys.executable, str(SCRIPT), *args, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def client_for(run_id: str) -> RunClient:
    info = [r for r in ls_json() if r["id"] == run_id][0]
    path = json.loads((Path(info["path"]) / "run.json").read_text())["socket"]
    return RunClient(path).subscribe()


def latest(client: RunClient, timeout: float = 20.0) -> msg.Snapshot:
    def probe():
        client.poll()
        return client.latest
    return wait_until(probe, timeout, what="a snapshot")


def wait_status(run_id: str, status: str, timeout: float = 60.0) -> dict:
    return wait_until(lambda: next((r for r in ls_json() if r["id"] == run_id and r["status"] == status), None),
                      timeout, what=f"status {status}")


@pytest.mark.slow
def test_exec_pause_step_stop_over_the_socket():
    """`trainmon exec --detach` starts the script; a viewer pauses it (the iteration stands still), lets one
    iteration through, resumes, and stops it: the script ends, the run is `stopped`."""
    run_id = start_exec("--epochs", "500")
    client = client_for(run_id)
    wait_until(lambda: latest(client).global_iteration > 20, 60, what="training")
    client.send(msg.Pause())
    wait_until(lambda: latest(client).status == msg.PAUSED, 20, what="paused")
    still = latest(client).global_iteration
    time.sleep(1.0)
    assert latest(client).global_iteration == still
    client.send(msg.StepOnce())
    wait_until(lambda: latest(client).global_iteration == still + 1, 20, what="one step")
    time.sleep(0.5)
    assert latest(client).global_iteration == still + 1
    client.send(msg.Resume())
    wait_until(lambda: latest(client).global_iteration > still + 5, 20, what="running again")
    client.send(msg.Stop())
    row = wait_status(run_id, "stopped")
    client.close()
    assert row["status"] == "stopped"
    info = read_run(Path(row["path"]))
    pid = info.info["launcher"]["pid"]
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
               .lower(), 20, what="the script to exit")


@pytest.mark.slow
def test_a_dropped_viewer_never_stops_the_loop():
    run_id = start_exec("--epochs", "500")
    for _ in range(2):  # a viewer that vanishes without a word (its socket just closes), twice
        client = client_for(run_id)
        before = latest(client).global_iteration
        client.sock.shutdown(2)  # no goodbye: the connection just drops
    client = client_for(run_id)
    wait_until(lambda: latest(client).global_iteration > before + 20, 30, what="training on")
    client.send(msg.Stop())
    wait_status(run_id, "stopped")
    client.close()


@pytest.mark.slow
def test_sigterm_stops_the_script_as_stopped_not_lost(tmp_path):
    """`kill PID` of a tracked script: it ends at the next batch, recorded as stopped."""
    env = dict(os.environ)
    process = subprocess.Popen([sys.executable, str(SCRIPT), "--epochs", "500"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        run = wait_until(lambda: next((r for r in ls_json() if r["status"] == "running"), None), 60, what="running")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        assert wait_status(run["id"], "stopped")["status"] == "stopped"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


STOPPABLE = """
import sys, time, torch, trainmon
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
run = trainmon.track(opt, quiet=True)
print("started", flush=True)
for epoch in run.epochs(100000):
    for x in run.batches(torch.utils.data.DataLoader(torch.randn(64, 4), batch_size=8)):
        model(x).mean().backward(); opt.step(); opt.zero_grad()
        time.sleep(0.001)
print("after the loop", flush=True)
if sys.argv[1:] == ["own-code"]:
    sys.exit(0)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode,expected", [("", 128 + signal.SIGTERM), ("own-code", 0)])
def test_a_script_stopped_by_sigterm_exits_128_plus_the_signal(tmp_path, mode, expected):
    """Issue 21 item 6: after SIGTERM the script's code after its loop runs, then the process exits 143 (a
    scheduler sees a stopped job, not a success) — unless the script exits with a code of its own."""
    script = tmp_path / "stoppable.py"
    script.write_text(STOPPABLE)
    process = subprocess.Popen([sys.executable, str(script), *([mode] if mode else [])], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "started"
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert "after the loop" in out, err
        assert process.returncode == expected, err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_sighup_stops_the_script_as_stopped_saying_why(tmp_path):
    """Issue 21 item 5: closing the terminal of `python train.py` (SIGHUP) ends the run stopped, not lost."""
    process = subprocess.Popen([sys.executable, str(SCRIPT), "--epochs", "500"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        run = wait_until(lambda: next((r for r in ls_json() if r["status"] == "running"), None), 60, what="running")
        process.send_signal(signal.SIGHUP)
        process.wait(timeout=90)  # the stop takes a second or two; CI's box may be loaded
        assert wait_status(run["id"], "stopped")["status"] == "stopped"
        assert "stopped by SIGHUP: the terminal closed" in run_cli("logs", run["id"]).stdout
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_a_failing_loop_is_failed_with_its_message(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text(textwrap.dedent("""
        import torch, trainmon
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        run = trainmon.track(opt)
        for epoch in run.epochs(2):
            for i, x in enumerate(run.batches(torch.utils.data.DataLoader(torch.randn(40, 4), batch_size=4))):
                if i == 5:
                    raise RuntimeError("the data went bad at batch 5")
                model(x).mean().backward(); opt.step(); opt.zero_grad()
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "the data went bad at batch 5" in result.stderr
    row = ls_json()[-1]
    assert row["status"] == "failed"
    logs = run_cli("logs", row["id"]).stdout
    assert "RuntimeError: the data went bad at batch 5" in logs


@pytest.mark.slow
def test_exec_of_a_script_that_never_tracks_says_so_and_leaves_no_run(tmp_path):
    script = tmp_path / "plain.py"
    script.write_text("print('training without trainmon')\n")
    result = run_cli("exec", "--", sys.executable, str(script), timeout=60)
    assert result.returncode == 1
    assert ("plain.py exited (exit code 0) before it started its run (trainmon.track() or a trainmon callback): "
            "nothing to watch") in result.stderr
    assert "training without trainmon" in result.stderr  # its output's tail
    assert ls_json() == []
    missing = run_cli("exec", "--", "no-such-program-xyz", timeout=30)
    assert missing.returncode == 2 and "cannot start no-such-program-xyz" in missing.stderr


def test_the_teaching_screen_does_not_claim_trainmon_weights_a_tracked_loop():
    from trainmon.tui.teaching import glossary

    def sentence(snapshot: msg.Snapshot) -> str:
        return dict(glossary(snapshot))["accumulation steps"]

    own = msg.Snapshot(batch_size=32, accum=4, dataset_size=1500, epochs=3, tracked=True)
    assert sentence(own) == "k = 4: the gradients of 4 micro-batches are summed; how each is weighted is the loop's own " \
        "before one update"
    assert "weighted by its share of the window's samples" in sentence(msg.Snapshot(batch_size=32, accum=4))


def test_a_loop_without_run_epochs_counts_each_pass_over_its_loader_as_an_epoch():
    torch.manual_seed(0)
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with trainmon.track(optimizer, epochs=2) as run:
        for _ in range(2):
            for x, y in run.batches(DataLoader(digits(50), batch_size=16)):  # 4 iterations, the last of 2
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                optimizer.zero_grad()
    ended = events_of(run, msg.EpochEnded)
    assert [(e.epoch, e.iterations, e.steps, e.samples_seen) for e in ended] == [(1, 4, 4, 50), (2, 4, 4, 100)]
    finished = events_of(run, msg.Finished)[-1]
    assert (finished.epochs_completed, finished.global_step, finished.stopped) == (2, 8, False)


def test_a_stop_mid_epoch_leaves_the_cut_epoch_without_an_epoch_end_as_the_engine_does():
    """A new user's trial: compare said 2/20 epochs done where `ls` said 1/20, and `logs` printed an `epoch=`
    line for the epoch a stop cut short. The engine emits no EpochEnded for it; neither does a tracked loop."""
    from trainmon.engine.core.report import event_line

    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with trainmon.track(optimizer) as run:
        for epoch in run.epochs(5):
            for i, (x, y) in enumerate(run.batches(DataLoader(digits(64), batch_size=16))):  # 4 iterations
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                optimizer.zero_grad()
                if epoch == 1 and i == 1:
                    run.tracker.channel.send(msg.Stop())  # a viewer's stop: it lands at the next safe point
    ended = events_of(run, msg.EpochEnded)
    assert [(e.epoch, e.iterations) for e in ended] == [(1, 4)]
    finished = events_of(run, msg.Finished)[-1]
    assert (finished.stopped, finished.epochs_completed, finished.global_iteration) == (True, 1, 6)
    lines = [event_line(e) for _, e in read_events(run.tracker.run_path)]
    assert [line.split()[0] for line in lines if line and line.startswith("epoch=")] == ["epoch=1/5"]


def test_ctrl_c_in_the_loop_ends_the_run_stopped():
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(KeyboardInterrupt):
        with trainmon.track(optimizer) as run:
            for _ in run.epochs(3):
                for i, _batch in enumerate(run.batches(DataLoader(digits(64), batch_size=16))):
                    if i == 2:
                        raise KeyboardInterrupt
    assert events_of(run, msg.Finished)[-1].stopped
    assert read_run(run.tracker.run_path).status == msg.STOPPED


async def test_a_dimmed_key_of_a_tracked_loop_says_why_and_sends_nothing():
    from fakes import ScriptedRun, digits_mid_run

    from trainmon.tui.app import TrainmonApp

    run = ScriptedRun(digits_mid_run(batch_size_off="this loop never reads run.batch_size", tracked=True))
    app = TrainmonApp(run, run_id="x")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        assert app.check_action("grow_batch", ()) is None and app.check_action("accum_up", ()) is True
        await pilot.press("plus")
        await pilot.pause(0.2)
        assert [n.message for n in app._notifications] == ["not available: this loop never reads run.batch_size"]
        assert run.sent == []


def test_misused_epochs_and_log_are_one_line_errors():
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer)
    with pytest.raises(RuntimeError, match="run.epochs\\(\\) is already looping"):
        for _ in run.epochs(2):
            for _ in run.epochs(2):
                pass
    with pytest.raises(TypeError, match="trainmon: run.log takes a 0-d tensor or a number, not str"):
        run.log("abc")
    with pytest.raises(ValueError, match="not a tensor of shape \\(32,\\)"):
        run.log(torch.zeros(32))
    run.close()
    with pytest.raises(RuntimeError, match="this run ended when its run.epochs\\(\\) loop ended"):
        next(iter(run.epochs(1)))


def test_leaving_the_epochs_loop_with_break_ends_the_run_soon():
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer)
    for epoch in run.epochs(5):
        for x, y in run.batches(DataLoader(digits(64), batch_size=16)):
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
        if epoch == 1:
            break  # early stopping
    # the run ends a moment later (LEFT_LOOP_GRACE), while the script goes on with other things
    wait_until(lambda: read_run(run.tracker.run_path).status == msg.FINISHED, 10, what="finished")
    finished = events_of(run, msg.Finished)[-1]
    assert (finished.epochs_completed, finished.global_iteration, finished.global_step) == (2, 8, 8)


def test_a_loader_without_a_batch_size_learns_it_from_its_first_batch():
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = digits(100)

    def generator():
        for start in range(0, 100, 32):
            yield data[start:start + 32]

    run = trainmon.track(optimizer, accum=2)
    for _ in run.epochs(1):
        for x, y in run.batches(generator()):
            nn.functional.cross_entropy(model(x), y).backward()
            if run.window_end:
                optimizer.step()
                optimizer.zero_grad()
    ended = events_of(run, msg.EpochEnded)[0]
    assert (ended.batch_size, ended.iterations, ended.iterations_planned, ended.samples_seen) == (32, 4, None, 100)
    assert read_run(run.tracker.run_path).snapshot.epochs == 1


def test_an_epoch_carries_only_its_own_validation():
    """Issue 21 item 2: a loop that validates in epoch 1 only: epochs 2 and 3 have no validation figures."""
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer)
    for epoch in run.epochs(3):
        for x, y in run.batches(DataLoader(digits(64), batch_size=16)):
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
        if epoch == 0:
            run.validation(0.75, accuracy=0.5)
    ended = events_of(run, msg.EpochEnded)
    assert [(e.epoch, e.val_loss, e.val_metrics) for e in ended] == [
        (1, 0.75, {"accuracy": 0.5}), (2, None, {}), (3, None, {})]
    finished = events_of(run, msg.Finished)[-1]
    assert finished.val_loss == 0.75  # the run's last validation stays the run's


def test_a_batch_whose_iteration_raised_is_not_counted():
    """Issue 21 item 3: the 20th batch raises before its forward pass: 19 iterations and their samples."""
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="batch 20"):
        with trainmon.track(optimizer) as run:
            for _ in run.epochs(2):
                for i, (x, y) in enumerate(run.batches(DataLoader(digits(300), batch_size=8))):
                    if i == 19:
                        raise RuntimeError("the data went bad at batch 20")
                    loss = nn.functional.cross_entropy(model(x), y)
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad()
                    run.log(loss)
    info = read_run(run.tracker.run_path)
    assert info.status == msg.FAILED
    assert (info.snapshot.global_iteration, info.snapshot.samples_seen, info.snapshot.global_step) == (19, 152, 19)


def test_a_break_out_of_the_batches_counts_the_batch_it_left_from():
    """A `break` after a batch's work: that batch counts, and the epoch goes on to its end."""
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer)
    for _ in run.epochs(2):
        for i, (x, y) in enumerate(run.batches(DataLoader(digits(64), batch_size=16))):
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
            if i == 1:
                break
    ended = events_of(run, msg.EpochEnded)
    assert [(e.epoch, e.iterations, e.steps, e.samples_seen) for e in ended] == [(1, 2, 2, 32), (2, 2, 2, 64)]


def test_every_epoch_start_carries_the_loaders_batch_size():
    """Issue 21 item 7: the first EpochStarted of a tracked loop said batch size 1 (the loader's is 16)."""
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer)
    for _ in run.epochs(2):
        for x, y in run.batches(DataLoader(digits(100), batch_size=16)):
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
    started = events_of(run, msg.EpochStarted)
    assert [(e.epoch, e.batch_size, e.iterations, e.last_batch_size, e.global_iteration) for e in started] == [
        (1, 16, 7, 4, 0), (2, 16, 7, 4, 7)]


def test_a_batch_that_raised_after_its_optimizer_step_counts_with_its_step():
    """The exception came after the step (a logging line, say): that step happened and its iteration ran."""
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="after the step"):
        with trainmon.track(optimizer) as run:
            for _ in run.epochs(2):
                for i, (x, y) in enumerate(run.batches(DataLoader(digits(80), batch_size=8))):
                    loss = nn.functional.cross_entropy(model(x), y)
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad()
                    run.log(loss)
                    if i == 4:
                        raise RuntimeError("failed after the step")
    snapshot = read_run(run.tracker.run_path).snapshot
    assert (snapshot.global_iteration, snapshot.global_step, snapshot.samples_seen) == (5, 5, 40)


def test_a_loop_that_logs_now_and_then_leaks_no_torch_warning(recwarn):
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer)
    for _ in run.epochs(1):
        for i, (x, y) in enumerate(run.batches(DataLoader(digits(80), batch_size=8))):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if i % 3 == 0:
                run.log(loss)  # requires grad: read with .item(), no warning
    assert [str(w.message) for w in recwarn if "requires_grad" in str(w.message)] == []
    assert events_of(run, msg.EpochEnded)[0].train_loss is not None


def test_a_tracked_script_says_once_how_to_watch_it(capsys, monkeypatch):
    """Issue 21 item 8: `python train.py` prints the run's id and how to attach, once, on stderr; quiet=True
    and TRAINMON_QUIET=1 keep it silent."""
    monkeypatch.delenv("TRAINMON_QUIET", raising=False)
    optimizer = torch.optim.SGD(nn.Linear(4, 1).parameters(), lr=0.1)
    run = trainmon.track(optimizer)
    run.close()
    err = capsys.readouterr().err
    assert err.count("trainmon: recording run") == 1 and f"trainmon attach {run.id}" in err
    trainmon.track(optimizer, quiet=True).close()
    monkeypatch.setenv("TRAINMON_QUIET", "1")
    trainmon.track(optimizer).close()
    assert "recording run" not in capsys.readouterr().err


def test_a_loader_without_a_length_and_its_short_last_window_stepped_after_the_loop_warn_nothing():
    """From a new user's trial: 50 samples at batch 7 from a generator, accum 3, the short last window stepped
    after the loop: no warning about the loop's accum, and the next epoch keeps k = 3."""
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = digits(50)

    def batches():
        for start in range(0, 50, 7):
            yield data[start:start + 7]

    run = trainmon.track(optimizer, accum=3)
    for _ in run.epochs(2):
        i = -1
        for i, (x, y) in enumerate(run.batches(batches())):
            nn.functional.cross_entropy(model(x), y).backward()
            if (i + 1) % 3 == 0:
                optimizer.step()
                optimizer.zero_grad()
        if (i + 1) % 3:
            optimizer.step()
            optimizer.zero_grad()
    assert events_of(run, msg.Warned) == []
    ended = events_of(run, msg.EpochEnded)
    assert [(e.iterations, e.steps, e.accum) for e in ended] == [(8, 3, 3), (8, 3, 3)]


@pytest.mark.parametrize("divide", [lambda loss: loss / 4, lambda loss: loss * 0.25])
def test_a_loss_logged_divided_by_the_accumulation_steps_is_warned_once(divide, capsys):
    """Issue 21 item 9: run.log(loss / 4) with accum=4 shows a loss 4× too small: one warning, on stderr too."""
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer, accum=4, quiet=True)
    for _ in run.epochs(1):
        for i, (x, y) in enumerate(run.batches(DataLoader(digits(64), batch_size=8))):
            scaled = divide(nn.functional.cross_entropy(model(x), y))
            scaled.backward()
            if (i + 1) % 4 == 0:
                optimizer.step()
                optimizer.zero_grad()
            run.log(scaled)
    warned = [e.message for e in events_of(run, msg.Warned)]
    assert len(warned) == 1 and "divided by the accumulation steps (4): log the undivided loss" in warned[0]
    assert capsys.readouterr().err.count("divided by the accumulation steps") == 1


def test_the_undivided_loss_is_not_warned():
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer, accum=4, quiet=True)
    for _ in run.epochs(1):
        for i, (x, y) in enumerate(run.batches(DataLoader(digits(64), batch_size=8))):
            loss = nn.functional.cross_entropy(model(x), y)
            (loss / 4).backward()
            if (i + 1) % 4 == 0:
                optimizer.step()
                optimizer.zero_grad()
            run.log(loss)
    assert events_of(run, msg.Warned) == []


def test_a_loss_logged_divided_before_backward_names_the_factor():
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainmon.track(optimizer, accum=4, quiet=True)
    for _ in run.epochs(1):
        for x, y in run.batches(DataLoader(digits(32), batch_size=8)):
            scaled = nn.functional.cross_entropy(model(x), y) / 4
            run.log(scaled)  # before backward: the factor is still there to read
            scaled.backward()
        optimizer.step()
    warned = [e.message for e in events_of(run, msg.Warned)]
    assert len(warned) == 1 and warned[0].startswith("run.log got the loss divided by the accumulation steps (4): ")
