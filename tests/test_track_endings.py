"""How a tracked script ends, from a new user's trial (issue 21): a stop during the code after the batches
(validation) ends the run there, closing the terminal ends it stopped with 129 though the script prints,
and the epochs counted done at the end are the ones `ls` counts (Ctrl+C, a break out of both loops)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engines import ls_json, untimed
from engines import trainmon as run_cli

LOOP = """
import os, sys, time, torch, trainmon
torch.manual_seed(0)
model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
loader = torch.utils.data.DataLoader(data, batch_size=8)   # 8 iterations an epoch
mode, marker = sys.argv[1], sys.argv[2]
run = trainmon.track(opt, quiet=True)
iterations = 0
for epoch in run.epochs(5):
    for i, (x, y) in enumerate(run.batches(loader)):
        torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step(); opt.zero_grad()
        iterations += 1
        if mode == "print":
            print("iteration", iterations, flush=True)
            time.sleep(0.01 if epoch < 2 else 0.2)   # after the marker: seconds for the terminal to close
        if mode == "break" and epoch == 1 and i == 3:
            break
        if mode == "ctrl-c" and epoch == 2 and i == 3:
            with open(marker + ".part", "w") as f:   # whole and closed before it appears: the interrupt
                f.write("in epoch 3")               # lands in the sleep, never in a file's finalizer
            os.replace(marker + ".part", marker)
            time.sleep(30)   # Ctrl+C comes here, after this batch's step
    if mode == "break" and epoch == 1:
        break
    if mode == "validate" and epoch == 1:
        open(marker, "w").write("validating")
        time.sleep(3)   # validation, during which the stop comes
    if mode == "print" and epoch == 1:
        open(marker, "w").write("epoch 2 done")
        time.sleep(0.3)
    run.validation(0.5)
print("after the loop", iterations, flush=True)
"""


def script(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(LOOP)
    return path


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def only_run() -> dict:
    runs = ls_json()
    assert len(runs) == 1, runs
    return runs[0]


def ending(run_id: str) -> str:
    return untimed(run_cli("logs", run_id).stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_stop_during_the_code_after_the_batches_ends_the_run_there(tmp_path):
    """SIGTERM while the script validates epoch 2: no third epoch is begun (its validation would run
    again and an epoch of 0 iterations be recorded); 2 epochs done, 16 iterations, exit 143."""
    marker = tmp_path / "validating"
    process = subprocess.Popen([sys.executable, str(script(tmp_path)), "validate", str(marker)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "after the loop 16" in out
    run = only_run()
    assert (run["status"], run["epochs_done"], run["global_iteration"]) == ("stopped", 2, 16)
    lines = run_cli("logs", run["id"]).stdout
    assert "epoch=3/5" not in lines
    assert ending(run["id"]).startswith("stopped epochs=2 iterations=16 ")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_closing_the_terminal_of_a_printing_script_ends_it_stopped_with_129(tmp_path):
    """The terminal closes (a real pty's master goes away: SIGHUP) while the script prints each
    iteration: later prints must not fail with EIO and turn the stop into a failure."""
    marker = tmp_path / "epoch-2"
    pid, fd = pty.fork()
    if pid == 0:  # the child: the script on the pty as its terminal
        os.execv(sys.executable, [sys.executable, str(script(tmp_path)), "print", str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    os.read(fd, 65536)
                except OSError:
                    break
        assert marker.exists()
        os.close(fd)  # the terminal goes away
        deadline = time.monotonic() + 60
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done[0] == pid, "the script did not end after its terminal closed"
        code = os.waitstatus_to_exitcode(done[1])
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    run = only_run()
    assert (code, run["status"]) == (128 + signal.SIGHUP, "stopped"), run


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["ctrl-c", "break"])
def test_the_epochs_done_at_the_end_are_the_ones_ls_counts(tmp_path, mode):
    """Ctrl+C inside epoch 3 (after 2 whole epochs and 4 batches), or a break out of both loops inside epoch 2: the run's
    last line says the epochs `ls` says are done (an epoch the loop left early is not one)."""
    marker = tmp_path / "in-epoch-3"
    process = subprocess.Popen([sys.executable, str(script(tmp_path)), mode, str(marker)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if mode == "ctrl-c":
            wait_for(marker)
            process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    run = only_run()
    expected = {"ctrl-c": ("stopped", 2, 20), "break": ("finished", 1, 12)}[mode]
    assert (run["status"], run["epochs_done"], run["global_iteration"]) == expected, err
    word, done, iterations = expected
    assert ending(run["id"]).startswith(f"{word} epochs={done} iterations={iterations} ")


KEPT = """
import torch, trainmon
model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
run = trainmon.track(opt, quiet=True)
epochs = run.epochs(5)   # kept in a name: the break below leaves it open, and the interpreter collects it at exit
for epoch in epochs:
    for x, y in run.batches(torch.utils.data.DataLoader(data, batch_size=8)):
        torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step(); opt.zero_grad()
    if epoch == 1:
        break
print("after the loop", flush=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_script_that_keeps_its_epochs_loop_open_exits(tmp_path):
    """The epochs generator, left open in a module-level name, is collected as the interpreter ends, after
    the exit handler ended the run: the process exits (it waited forever for a timer thread that can no
    longer start), and the run is finished with its two whole epochs (the second's batches all ran before the break)."""
    path = tmp_path / "kept.py"
    path.write_text(KEPT)
    process = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60)
    assert (process.returncode, process.stdout) == (0, "after the loop\n"), process.stderr
    run = only_run()
    assert (run["status"], run["epochs_done"], run["global_iteration"]) == ("finished", 2, 16), run
