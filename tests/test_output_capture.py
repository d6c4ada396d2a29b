"""The job's own output recorded in the run directory for every run kind — headless, detached, `track()` in a
script, `trainmon exec` — by real processes: Python prints, `\\r` progress, stderr, a C-level `os.write`, a child
process; the terminal still gets all of it; rotation by a small cap; the opt-out; a slow disk never holds the
job up."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from engines import TRAINMON, run_info, trainmon, wait_until

from trainmon.engine.core.terminal_lines import collapse
from trainmon.engine.record.output_log import read_output

PRINT_JOB = textwrap.dedent('''
    import os, subprocess, sys
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from trainmon.engine import Job

    class Loud(nn.Linear):
        calls = 0

        def forward(self, x):
            Loud.calls += 1
            if Loud.calls == 6:  # in training (the preflight's forward comes before the run directory)
                print("\\nfirst forward", flush=True)
                print("a line on stderr", file=sys.stderr, flush=True)
                os.write(1, b"a C-level write\\n")
                subprocess.run(["echo", "from a child process"], check=True)
            if self.training:
                print(f"\\rprogress {Loud.calls}", end="", flush=True)
            return super().forward(x)

    def job():
        torch.manual_seed(0)
        x = torch.randn(64, 4)
        return Job(name="printer", model=Loud(4, 1), train_dataset=TensorDataset(x, x.sum(1, keepdim=True)),
                   loss_fn=nn.functional.mse_loss, epochs=2, batch_size=16, lr=0.05)
''')

JOB_LINES = ["first forward", "a line on stderr", "a C-level write", "from a child process"]

TRACKED = textwrap.dedent('''
    import os, subprocess, sys
    import torch, trainmon
    from torch import nn

    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(64, 4)
    run = trainmon.track(optimizer, name="own")
    print("tracked start", flush=True)
    print("a line on stderr", file=sys.stderr, flush=True)
    os.write(1, b"a C-level write\\n")
    subprocess.run(["echo", "from a child process"], check=True)
    lines = int(os.environ.get("LINES_TO_PRINT", "0"))
    for epoch in run.epochs(2):
        for i in run.batches(range(4), samples=lambda batch: 16):
            loss = nn.functional.mse_loss(model(x[i * 16:(i + 1) * 16]), x[i * 16:(i + 1) * 16].sum(1, keepdim=True))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            run.log(loss)
            print(f"\\rstep {i}", end="", flush=True)
        print()
    for n in range(lines):
        print(f"line {n:06d} " + "x" * 88)
    if os.environ.get("FAIL_AT_END"):
        raise RuntimeError("the script failed at its end")
    print("after the loop")
''')


def only_run_dir(home: Path) -> Path:
    runs = [p for p in (home / "runs").iterdir() if (p / "run.json").exists()]
    assert len(runs) == 1, runs
    return runs[0].resolve()


def recorded(run_dir: Path) -> list[str]:
    return collapse(read_output(run_dir)[0].decode())


def run_script(tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    script = tmp_path / "own.py"
    script.write_text(TRACKED)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_headless_records_the_jobs_output_not_trainmons_lines(tmp_path, trainmon_home):
    (tmp_path / "printjob.py").write_text(PRINT_JOB)
    result = trainmon("run", str(tmp_path / "printjob.py"), "--headless")
    assert result.returncode == 0, result.stderr
    for line in ("first forward", "a C-level write", "from a child process"):
        assert line in result.stdout  # the terminal still gets the job's prints
    assert "a line on stderr" in result.stderr
    # trainmon's last line; the job's last `\rprogress 9` is teed by the capture's thread and may come after it
    assert re.search(r"^(progress \d)?finished epochs=2 ", result.stdout, re.M), result.stdout
    lines = recorded(only_run_dir(trainmon_home))
    assert [line for line in lines if line in JOB_LINES and "stderr" not in line] == [
        "first forward", "a C-level write", "from a child process"]
    assert any("a line on stderr" in line for line in lines)  # stderr's own pipe: it may land inside a line
    # the preflight's forward, then 8 iterations: \r lines collapsed to their last state before each newline
    # stderr's line, read by its own thread, may land inside the unfinished bar (after `\rprogress 2`, or 5):
    # then the bar's state before it is a line of its own, or the line holds both
    bars = [line for line in lines if line.startswith("progress")]
    clean = [line.replace("a line on stderr", "")[:10] for line in bars]
    assert clean[-2:] == ["progress 5", "progress 9"], bars
    assert len(clean) == 2 or (len(clean) == 3 and "a line on stderr" in bars[0]), bars
    assert not any(line.startswith(("epoch=", "finished", "run id=")) for line in lines)  # trainmon's own
    shown = trainmon("logs", "--output", str(only_run_dir(trainmon_home)))  # what `logs --output` prints
    assert shown.returncode == 0 and shown.stdout.splitlines() == lines
    raw = subprocess.run([TRAINMON, "logs", "--output", "--raw", str(only_run_dir(trainmon_home))],
                         capture_output=True, timeout=60).stdout
    assert raw.endswith(b"\rprogress 9")  # as recorded; stderr's line may have joined the bar after progress 5
    assert b"\rprogress 5\n" in raw.replace(b"a line on stderr", b"")
    info = run_info(only_run_dir(trainmon_home))
    assert info["output"] == {"captured": True, "why": "captured", "file": "output.log", "file_mib": 16.0, "keep": 3}
    assert info["versions"]["torch"] and info["versions"]["python"] == sys.version.split()[0]
    assert info["machine"]["cpu_count"] == os.cpu_count()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_detached_engine_records_each_line_once(tmp_path, trainmon_home):
    (tmp_path / "printjob.py").write_text(PRINT_JOB)
    result = trainmon("run", str(tmp_path / "printjob.py"), "--detach")
    assert result.returncode == 0, result.stderr
    run_dir = only_run_dir(trainmon_home)
    wait_until(lambda: run_info(run_dir).get("status") == "finished", 90, what="the run to finish")
    wait_until(lambda: recorded(run_dir)[-1:] == ["progress 9"], 10, what="the last output")  # preflight + 8
    lines = recorded(run_dir)
    for line in JOB_LINES:
        assert lines.count(line) == 1, lines  # the engine's stdout is output.log: never copied to it twice


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_track_in_a_script_records_its_output_and_its_traceback(tmp_path, trainmon_home):
    result = run_script(tmp_path, {"FAIL_AT_END": "1"})
    assert result.returncode == 1
    assert "tracked start\na C-level write\nfrom a child process\n" in result.stdout  # the terminal, in order
    assert "a line on stderr" in result.stderr and "RuntimeError: the script failed at its end" in result.stderr
    lines = recorded(only_run_dir(trainmon_home))
    # each stream in its order (between stdout and stderr, the file's order can differ from the terminal's)
    assert [line for line in lines if line in JOB_LINES + ["tracked start"] and "stderr" not in line] == [
        "tracked start", "a C-level write", "from a child process"]
    assert any("a line on stderr" in line for line in lines)
    assert lines.count("step 3") == 2  # one collapsed line an epoch
    assert lines[-1] == "RuntimeError: the script failed at its end"  # the traceback is recorded too
    assert run_info(only_run_dir(trainmon_home))["status"] == "finished"  # its loop had ended well before


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_exec_records_the_scripts_output_once(tmp_path, trainmon_home):
    script = tmp_path / "own.py"
    script.write_text(TRACKED)
    result = trainmon("exec", "--detach", "--", sys.executable, str(script))
    assert result.returncode == 0, result.stderr
    run_dir = only_run_dir(trainmon_home)
    wait_until(lambda: run_info(run_dir).get("status") == "finished", 90, what="the script to finish")
    wait_until(lambda: "after the loop" in recorded(run_dir), 10, what="the last line")
    lines = recorded(run_dir)
    for line in ["tracked start", "a line on stderr", "a C-level write", "from a child process", "after the loop"]:
        assert lines.count(line) == 1, lines


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_rotation_by_a_small_cap(tmp_path, trainmon_home):
    result = run_script(tmp_path, {"TRAINMON_OUTPUT_MIB": "0.1", "LINES_TO_PRINT": "6000"})  # 600 KB of lines
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\nline ") == 6000  # the terminal got all of it
    run_dir = only_run_dir(trainmon_home)
    names = sorted(p.name for p in run_dir.glob("output.log*"))
    assert names == ["output.log", "output.log.1", "output.log.2", "output.log.3"]  # the oldest removed
    cap = int(0.1 * 1048576)
    assert all(p.stat().st_size <= cap for p in run_dir.glob("output.log*"))
    lines = recorded(run_dir)
    assert lines[-1] == "after the loop"
    numbered = [int(line[5:11]) for line in lines if line.startswith("line ")]
    assert numbered == list(range(numbered[0], 6000))  # the newest, whole and in order
    assert 6000 - len(numbered) > 2000  # the oldest were rotated away
    assert json.loads((run_dir / "run.json").read_text())["output"]["file_mib"] == 0.1


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_trainmon_capture_0_opts_out(tmp_path, trainmon_home):
    result = run_script(tmp_path, {"TRAINMON_CAPTURE": "0"})
    assert result.returncode == 0, result.stderr
    assert "tracked start" in result.stdout and "after the loop" in result.stdout
    run_dir = only_run_dir(trainmon_home)
    assert not (run_dir / "output.log").exists()
    assert run_info(run_dir)["output"] == {"captured": False, "why": "TRAINMON_CAPTURE=0", "file": "output.log"}


SLOW_DISK = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from trainmon.engine.record.output_capture import OutputCapture

    capture = OutputCapture(Path(sys.argv[1]), queue_chunks=2)
    write = capture.out.write

    def slow_write(data):
        time.sleep(0.2)  # a disk that takes 0.2 s a write
        write(data)

    capture.out.write = slow_write
    capture.start()
    started = time.monotonic()
    for n in range(200):
        print(f"line {n}", flush=True)
        time.sleep(0.001)
    took = time.monotonic() - started
    capture.stop()
    print(f"took {took:.3f} dropped {capture.dropped_bytes}")
''')


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_slow_disk_never_holds_the_job_up(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(SLOW_DISK)
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=50)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[:200] == [f"line {n}" for n in range(200)]  # the terminal lost nothing, in order
    took, dropped = float(out[200].split()[1]), int(out[200].split()[3])
    assert took < 5.0  # 200 writes to a 0.2 s disk would take 40 s
    assert dropped > 0
    text = (tmp_path / "output.log").read_text()
    assert "bytes of output not recorded here: the disk was slow]" in text  # the gap is said where it is
    assert "line 0\n" in text


RANK_JOB = textwrap.dedent('''
    import os
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from trainmon.engine import Job

    class Loud(nn.Linear):
        calls = 0

        def forward(self, x):
            Loud.calls += 1
            if Loud.calls == 3:
                print("hello from every rank", flush=True)
                print(f"I am rank {os.environ.get('RANK')}", flush=True)
            return super().forward(x)

    def job():
        torch.manual_seed(0)
        x = torch.randn(64, 4)
        return Job(name="ranks", model=Loud(4, 1), train_dataset=TensorDataset(x, x.sum(1, keepdim=True)),
                   loss_fn=nn.functional.mse_loss, epochs=2, batch_size=8, lr=0.05)
''')


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_each_torchrun_rank_records_its_own_output(tmp_path, trainmon_home):
    (tmp_path / "ranks.py").write_text(RANK_JOB)
    result = trainmon("run", str(tmp_path / "ranks.py"), "--nproc-per-node", "2", "--headless", "--device", "cpu",
                      timeout=200)
    assert result.returncode == 0, result.stderr
    run_dir = only_run_dir(trainmon_home)
    assert recorded(run_dir) == ["hello from every rank", "I am rank 0"]
    assert collapse((run_dir / "output.rank1.log").read_text()) == ["hello from every rank", "I am rank 1"]
    shown = trainmon("logs", "--output", str(run_dir)).stdout.splitlines()
    assert shown == ["ranks 0–1: hello from every rank", "rank 0: I am rank 0", "rank 1: I am rank 1"]
    assert trainmon("logs", "--output", "--rank", "1", str(run_dir)).stdout.splitlines() == [
        "hello from every rank", "I am rank 1"]


def test_logs_output_of_a_run_that_printed_nothing_says_so(trainmon_home):
    from click.testing import CliRunner

    from trainmon.cli.main import cli
    from trainmon.engine.run.session import create_run

    rundir = create_run("quiet", {"job": "quiet"}, now=1_000_000_000.0)
    rundir.update(durable=True, output={"captured": True, "file": "output.log"})
    (rundir.path / "output.log").write_bytes(b"")
    run_id = rundir.info["id"]
    for extra in ([], ["--raw"]):
        result = CliRunner().invoke(cli, ["logs", "--output", *extra, run_id])
        assert (result.exit_code, result.stdout, result.stderr) == (0, "", f"trainmon: run {run_id} printed nothing\n")
    (rundir.path / "output.log").write_bytes(b"epoch 1\n")
    result = CliRunner().invoke(cli, ["logs", "--output", run_id])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "epoch 1\n", "")
