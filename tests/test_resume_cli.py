"""`trainmon resume` with real processes: SIGTERM saves and exits 143, `kill -9` loses only the partial
epoch, `q` in the TUI then `trainmon resume` goes on; a resumed run's recorded losses equal those of
a run that never stopped. Refusals are one line, exit 2, and leave the run as it was."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from engines import TRAINMON, pid_gone, row, run_info, trainmon, untimed, wait_until
from tmux import needs_tmux

pytestmark = pytest.mark.slow  # real trainmon processes

ARGS = ("--epochs", "3", "--batch-size", "2", "--accum", "3")  # 719 iterations an epoch: ~1-2 s here


def start_headless(*args: str) -> tuple[subprocess.Popen, str, Path]:
    process = subprocess.Popen([TRAINMON, "--headless", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    first = process.stdout.readline()
    match = re.match(r"^run id=(\S+) dir=(\S+) time=\S+$", first)
    assert match, first + process.stderr.read()
    return process, match.group(1), Path(match.group(2))


def checkpoints(run_dir: Path) -> list[str]:
    folder = run_dir / "checkpoints"
    return sorted(p.name for p in folder.glob("ckpt-*.pt")) if folder.is_dir() else []


def losses(run_dir: Path) -> list:
    """Every recorded iteration's loss (loss.json keeps the last 10,000 exactly: all of them here)."""
    data = json.loads((run_dir / "loss.json").read_text())
    assert data["buckets"] == []
    return data["recent"]


def straight_run(*args: str) -> Path:
    result = trainmon("--headless", *args, timeout=300)  # a busy 2-core box can make this slow
    assert result.returncode == 0, result.stderr
    return Path(re.match(r"^run id=\S+ dir=(\S+) time=\S+$", result.stdout.splitlines()[0]).group(1))


@pytest.mark.timeout(400)
def test_sigterm_saves_then_exits_143_and_resume_goes_on_exactly():
    process, run_id, run_dir = start_headless(*ARGS)
    try:
        wait_until(lambda: checkpoints(run_dir), timeout=120, interval=0.05, what="the first epoch-end checkpoint")
        time.sleep(0.3)  # into epoch 2
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err
    saved = [line for line in out.splitlines() if line.startswith('checkpoint_saved reason="signal"')]
    assert len(saved) == 1, out
    at = re.search(r" epoch=(\d) iteration_in_epoch=(\d+) epoch_complete=false .* seconds=[0-9.]", saved[0])
    epoch = int(at.group(1))  # 2 unless this box is very busy: the epoch the signal came in
    assert epoch >= 2 and out.splitlines()[-1].startswith(f"stopped epochs={epoch - 1} ")
    assert row(run_id)["status"] == "stopped"

    resumed = trainmon("resume", "--headless", run_id)
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stdout.splitlines()
    assert untimed(lines[0]) == f"run id={run_id} dir={run_dir}"
    assert re.match(rf"^resumed_from_checkpoint epoch={epoch} iteration_in_epoch={at.group(2)} "
                    rf"global_iteration={719 * (epoch - 1) + int(at.group(2))} lost_iterations=0 "
                    rf"path=.*ckpt-00000{epoch}\.pt\" time=\S+$", lines[1]), lines[1]
    assert lines[-1].startswith("finished epochs=3 iterations=2157 ")
    info = run_info(run_dir)
    assert (info["status"], info["exit_code"], len(info["resumes"])) == ("finished", 0, 1)

    assert losses(run_dir) == losses(straight_run(*ARGS))  # every iteration, to the last bit of the JSON float
    logs = trainmon("logs", run_id).stdout.splitlines()
    # (alert lines left out: batches of 2 are heavy-tailed enough to raise a loss_spike now and then)
    assert [line.split()[0] for line in logs if not line.startswith(("checkpoint_saved", "alert "))] == [
        f"epoch={e}/3" for e in range(1, epoch)] + ["stopped", "resumed_from_checkpoint"] + [
        f"epoch={e}/3" for e in range(epoch, 4)] + ["finished"]


@pytest.mark.timeout(400)
def test_kill_9_after_an_epoch_end_checkpoint_resumes_from_that_epoch_end():
    process, run_id, run_dir = start_headless(*ARGS)
    try:
        wait_until(lambda: checkpoints(run_dir), timeout=120, interval=0.05, what="the first epoch-end checkpoint")
        time.sleep(0.5)
        process.kill()
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    wait_until(lambda: pid_gone(process.pid), timeout=20)
    saved = checkpoints(run_dir)
    epoch = len(saved)  # 1 unless this box is very busy: one file per epoch end
    assert saved[-1] == f"ckpt-00000{epoch}.pt" and epoch < 3
    assert row(run_id)["status"] == "lost"

    resumed = trainmon("resume", "--headless")  # the newest run that did not finish
    assert resumed.returncode == 0, resumed.stderr
    first = resumed.stdout.splitlines()[1]
    assert re.match(rf"^resumed_from_checkpoint epoch={epoch} iteration_in_epoch=719 global_iteration={719 * epoch} "
                    r"lost_iterations=\d+ path=", first), first
    assert losses(run_dir) == losses(straight_run(*ARGS))


@needs_tmux
@pytest.mark.timeout(300)
def test_q_in_the_tui_then_resume_shows_the_run_going_on_and_ends_as_a_straight_run(tmux):
    t = tmux(f"{TRAINMON} --epochs 60", 100, 30)
    t.wait_for("RUNNING", timeout=90)
    def epoch() -> int:
        found = re.search(r"epoch\s+(\d+)/60", t.screen())
        return int(found.group(1)) if found else 0

    wait_until(lambda: epoch() >= 3, timeout=120, what="epoch 3")
    t.keys("space")  # paused first: 60 epochs take seconds here, and the stop must come before the end
    t.wait_for("PAUSED")
    t.keys("q")
    t.wait_for("Stop the run")  # q asks first (issue 26 item 11)
    t.keys("y")
    assert t.exit_code(timeout=60) == 0
    [run] = [r for r in json.loads(trainmon("ls", "--json").stdout)]
    assert run["status"] == "stopped"
    stopped_at = run["global_iteration"]
    assert 0 < stopped_at < 60 * 45

    t2 = tmux(f"{TRAINMON} resume", 100, 30)
    screen = t2.wait_for("resumed", timeout=90)
    t2.wait_for("FINISHED", timeout=120)
    screen = t2.screen()
    assert run["id"] in screen
    t2.keys("q")
    assert t2.exit_code(timeout=60) == 0
    run_dir = Path(run["path"])
    resumes = [e["event"] for e in map(json.loads, (run_dir / "events.jsonl").read_text().splitlines())
               if e["event"]["type"] == "RunResumed"]
    assert [r["global_iteration"] for r in resumes] == [stopped_at]  # the same global iteration, not 0
    straight = straight_run("--epochs", "60")
    final = [json.loads(line)["event"] for line in (run_dir / "events.jsonl").read_text().splitlines()][-1]
    reference = [json.loads(line)["event"] for line in (straight / "events.jsonl").read_text().splitlines()][-1]
    assert final["type"] == reference["type"] == "Finished"
    assert abs(final["val_loss"] - reference["val_loss"]) <= 1e-6
    assert losses(run_dir)[-100:] == losses(straight)[-100:]


# ---- refusals: one line, exit 2, the run left as it was ----------------------------------------

def stopped_run(*args: str) -> tuple[str, Path]:
    """A headless run stopped by SIGTERM mid-epoch-2 (two checkpoints: epoch 1's end and the stop's)."""
    process, run_id, run_dir = start_headless(*args)
    try:
        wait_until(lambda: checkpoints(run_dir), timeout=120, interval=0.05, what="the first checkpoint")
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return run_id, run_dir


@pytest.mark.timeout(240)
def test_refusals_are_one_line_and_leave_the_run_as_it_was():
    run_id, run_dir = stopped_run(*ARGS)
    before = run_info(run_dir)
    for args, message in [
        (("--seed", "5"), f"--seed 5 would break exactness: run {run_id} trained with seed 0"),
        (("--batch-size", "0"), "--batch-size 0: batch size must be a whole number"),
        (("--accum", "-1"), "--accum -1: accumulation steps must be a whole number"),
        (("--headless", "--detach"), "choose --headless"),
        (("--keep-checkpoints", "0"), "checkpoints to keep must be a whole number >= 1, got 0"),
        (("--epochs", "1"), "--epochs 1 is fewer than the run already reached (epoch "),
    ]:
        result = trainmon("resume", run_id, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith(f"trainmon: error: {message}"), result.stderr
        assert len(result.stderr.splitlines()) == 1
    assert run_info(run_dir)["status"] == before["status"] == "stopped"
    assert checkpoints(run_dir) == ["ckpt-000001.pt", "ckpt-000002.pt"]


@pytest.mark.timeout(240)
def test_a_corrupt_newest_checkpoint_is_named_and_the_one_before_is_used():
    run_id, run_dir = stopped_run(*ARGS)
    newest = run_dir / "checkpoints" / "ckpt-000002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a truncated file
    result = trainmon("resume", "--headless", run_id)
    assert result.returncode == 0, result.stderr
    assert re.match(r"^trainmon: skipped checkpoint ckpt-000002\.pt: unreadable \(\w+: .+\)$",
                    result.stderr.splitlines()[0]), result.stderr
    assert re.match(r"^resumed_from_checkpoint epoch=1 iteration_in_epoch=719 global_iteration=719 ",
                    result.stdout.splitlines()[1])
    assert result.stdout.splitlines()[-1].startswith("finished epochs=3 ")


JOB = textwrap.dedent('''
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from trainmon.engine import Job

    def job():
        x = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
        return Job(name="tiny", model=nn.Sequential(nn.Linear(4, WIDTH), nn.Linear(WIDTH, 1)),
                   train_dataset=TensorDataset(x, x.sum(1, keepdim=True)), loss_fn=nn.functional.mse_loss,
                   epochs=2, batch_size=32, lr=0.05)
''')


@pytest.mark.timeout(120)
def test_a_job_file_changed_so_the_checkpoint_no_longer_fits_exits_2_naming_the_mismatch(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(JOB.replace("WIDTH", "8"))
    result = trainmon("run", str(path), "--headless")
    assert result.returncode == 0, result.stderr
    run_id = re.match(r"^run id=(\S+) ", result.stdout).group(1)
    path.write_text(JOB.replace("WIDTH", "16"))
    result = trainmon("resume", run_id, "--epochs", "4", "--headless")
    assert result.returncode == 2
    assert result.stderr == ("trainmon: error: the job no longer fits checkpoint ckpt-000002.pt: parameter "
                             "'0.weight' has shape (8, 4) in the checkpoint but (16, 4) in the job's model\n")
    assert row(run_id)["status"] == "finished"
    path.write_text(JOB.replace("WIDTH", "8").replace("lr=0.05)", "lr=0.05, optimizer=torch.optim.Adam)"))
    result = trainmon("resume", run_id, "--epochs", "4", "--headless")
    assert (result.returncode, result.stderr) == (2, "trainmon: error: the job no longer fits checkpoint "
                                                     "ckpt-000002.pt: the job's optimizer is Adam, the checkpoint's "
                                                     "SGD\n")
    assert row(run_id)["status"] == "finished"  # left as it was: nothing was recorded
    path.write_text(JOB.replace("WIDTH", "8"))
    result = trainmon("resume", run_id, "--headless")
    assert result.returncode == 2
    assert result.stderr == "trainmon: error: the run trained all its 2 epochs: give --epochs with more to train on\n"
    result = trainmon("resume", run_id, "--epochs", "3", "--headless")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("finished epochs=3 iterations=30 ")


def test_resume_without_a_stopped_run_and_of_a_live_run(trainmon_home):
    result = trainmon("resume")
    assert (result.returncode, result.stderr) == (2, "trainmon: error: no stopped run with checkpoints to resume "
                                                     "(see `trainmon ls`; a finished run resumes with its id and "
                                                     "--epochs)\n")
    from trainmon.engine.run.session import create_run

    rundir = create_run("digits", {"job": "digits", "target": "digits", "seed": 0, "options": {}})
    rundir.lock()  # an engine holds the run: it is live
    try:
        result = trainmon("resume", rundir.info["id"])
        assert result.returncode == 2
        assert result.stderr == (f"trainmon: error: run {rundir.info['id']} is still running: "
                                 f"`trainmon attach {rundir.info['id']}` to watch it\n")
    finally:
        os.close(rundir._lock_fd)


@pytest.mark.timeout(120)
def test_a_headless_run_whose_reader_goes_away_saves_and_stops():
    """`trainmon --headless | head -3`: the closed pipe stops the run like SIGHUP (saved, recorded, 141)."""
    process = subprocess.Popen([TRAINMON, "--headless", "--epochs", "300"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        lines = [process.stdout.readline() for _ in range(3)]
        process.stdout.close()  # what `head -3` does once it has its lines
        err = process.stderr.read()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 141, err
    assert err == ""  # no BrokenPipeError traceback
    run_dir = Path(re.match(r"^run id=\S+ dir=(\S+) time=\S+$", lines[0].strip()).group(1))
    info = run_info(run_dir)
    assert (info["status"], info["exit_code"]) == ("stopped", 141)
    events = [json.loads(line)["event"] for line in (run_dir / "events.jsonl").read_text().splitlines()]
    saved = [e for e in events if e["type"] == "CheckpointSaved"]
    assert saved[-1]["reason"] in ("signal", "epoch end")  # the epoch end's, when the pipe closed right at it
    assert saved[-1]["global_iteration"] == events[-1]["global_iteration"]  # where it stopped is saved


@pytest.mark.timeout(300)
def test_a_killed_detached_engine_resumes_detached():
    """kill -9 leaves the engine's socket file behind: the resumed engine's own socket must be the one found."""
    from engines import kill_engine, start_detached

    run_id, run_dir = start_detached("--epochs", "300")
    try:
        wait_until(lambda: checkpoints(run_dir), timeout=120, interval=0.1, what="the first checkpoint")
        pid = run_info(run_dir)["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: pid_gone(pid), timeout=20)
        assert row(run_id)["status"] == "lost"
        resumed = trainmon("resume", run_id, "--detach")
        assert (resumed.returncode, resumed.stdout.strip()) == (0, run_id), resumed.stderr
        wait_until(lambda: row(run_id)["status"] == "running" and run_info(run_dir)["pid"] != pid, timeout=60)
        stopped = trainmon("stop", run_id)
        assert stopped.returncode == 0, stopped.stderr
    finally:
        kill_engine(run_dir)
