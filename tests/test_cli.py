"""The CLI, run as a user runs it: a real `trainmon` process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TRAINMON = str(Path(sys.executable).with_name("trainmon"))
EPOCH_LINE = re.compile(
    r"^epoch=(\d+)/(\d+) iterations=(\d+)/(\d+) steps=(\d+) samples=(\d+) train_loss=(\S+) val_loss=(\S+)"
    r" val_acc=(\S+) batch_size=(\d+) accum=(\d+) lr=(\S+) elapsed=[\d.]+s"
)


def trainmon(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([TRAINMON, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_plan_json_reports_16_iterations():
    result = trainmon("plan", "--samples", "1000", "--batch-size", "64", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["epochs"][0]["iterations"] == 16 and data["epochs"][0]["last_batch_size"] == 40
    assert data["total_iterations"] == 16


@pytest.mark.slow
def test_plan_json_full_example():
    result = trainmon("plan", "--samples", "1000", "--batch-size", "64", "--accum", "4", "--epochs", "2", "--json")
    data = json.loads(result.stdout)
    assert result.stdout.count("\n") == 1
    assert data["epochs"] == [{"epoch": 1, "last_epoch": 2, "batch_size": 64, "accum": 4, "iterations": 16,
                               "last_batch_size": 40, "window_sizes": [4, 4, 4, 4], "full_windows": 4,
                               "last_window_size": 4, "optimizer_steps": 4, "samples": 1000,
                               "effective_batch_size": 256}]  # identical epochs share one entry
    assert (data["total_iterations"], data["total_optimizer_steps"], data["total_samples"],
            data["effective_batch_size"]) == (32, 8, 2000, 256)


@pytest.mark.slow
def test_plan_human_readable_explains_the_undercount():
    result = trainmon("plan", "--samples", "1000", "--batch-size", "64", "--drop-last")
    assert result.returncode == 0
    assert "total iterations 15" in result.stdout and "total samples 960" in result.stdout
    result = trainmon("plan", "--job", "seed-example", "--batch-size", "64")
    assert "1000 // 64 = 15 undercounts; the loader yields 16 iterations" in " ".join(result.stdout.split())


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--samples", "1000", "--batch-size", "0"], "batch size must be a whole number >= 1"),
        (["--samples", "1000", "--batch-size", "64", "--accum", "0"], "accumulation steps must be"),
        (["--samples", "-5", "--batch-size", "64"], "samples must be >= 0"),
        (["--samples", "10", "--batch-size", "64", "--drop-last"], "drop_last drops them all"),
        (["--samples", "ten", "--batch-size", "64"], "'ten' is not a valid integer"),
        (["--batch-size", "64"], "give --samples N or --job NAME"),
        (["--samples", "1000"], "give --batch-size B with --samples"),
        (["--samples", "1000", "--batch-size", "64", "--batch-growth", "1e308", "--epochs", "2"],
         "batch growth 1e+308 takes the batch size above 2147483647 at epoch 2 (from 64); "
         "cap it with --max-batch-size"),
        (["--samples", "1000", "--batch-size", "64", "--batch-growth", "10", "--epochs", "400"],
         "above 2147483647 at epoch 9 (from 64)"),
        (["--samples", "100000000000000000", "--batch-size", "1"], "samples must be at most 9007199254740992"),
        (["--samples", "5", "--batch-size", "9223372036854775807"], "batch size must be at most 2147483647"),
        (["--samples", "1000", "--batch-size", "64", "--max-batch-size", "10"],
         "max batch size 10 is below the batch size 64"),
        (["--samples", "1000", "--batch-size", "64", "--world-size", "0"],
         "world size must be a whole number >= 1, got 0"),
    ],
)
def test_plan_bad_input_exits_2_with_one_line(args, fragment):
    result = trainmon("plan", *args, "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and lines[0].startswith("trainmon: error:")


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--batch-size", "0"], "batch size must be"),
        (["--epochs", "-1"], "epochs must be"),
        (["--accum", "0"], "accumulation steps must be"),
        (["--device", "cuda:7"], "device"),
        (["--job", "nope"], "unknown job 'nope'"),
        (["--batch-size", "5000", "--drop-last"], "drop_last drops them all"),
        (["--lr", "inf"], "learning rate must be > 0 and finite, got inf"),
        (["--batch-size", "64", "--max-batch-size", "10"], "max batch size 10 is below the batch size 64"),
        (["--batch-size", "9223372036854775807"], "batch size must be at most 2147483647"),
        (["--batch-growth", "10", "--epochs", "400"], "above 2147483647 at epoch 9 (from 32)"),
        (["--device", "cpu:5"], "device 'cpu:5': the CPU takes no index"),
        (["--seed", "99999999999999999999"], "seed must be a whole number from 0 to 9223372036854775807"),
        (["--job", "seed-example", "--image-size", "100000"], "image size must be a whole number from 1 to 512"),
        (["--image-size", "8"], "--image-size applies only to --job seed-example"),
    ],
)
def test_run_bad_options_exit_2_with_one_line(args, fragment):
    result = trainmon("--headless", *args, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


@pytest.mark.slow
def test_headless_digits_trains_above_90_percent():
    # stdout is a pipe here, so trainmon picks headless by itself (no --headless flag).
    result = trainmon()
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    lines = result.stdout.strip().splitlines()
    epochs = [EPOCH_LINE.match(line) for line in lines if line.startswith("epoch=")]
    assert len(epochs) == 5 and all(epochs)
    e, total, it, n, steps, samples = (int(epochs[1].group(i)) for i in range(1, 7))
    assert (e, total, it, n, steps, samples) == (2, 5, 45, 45, 45, 2874)
    assert float(epochs[-1].group(9)) >= 0.90
    assert all(re.search(r" peak_rss_mib=\d+ samples_per_s=\S+ time=\S+$", line)  # the throughput goes last
               for line in lines if line.startswith("epoch="))
    assert lines[-1].startswith("finished epochs=5 iterations=225 steps=225 samples=7185")


@pytest.mark.slow
def test_headless_seed_example_with_accumulation():
    result = trainmon("--job", "seed-example", "--epochs", "2", "--accum", "3", "--headless")
    assert result.returncode == 0, result.stderr
    run_line, first = result.stdout.splitlines()[:2]
    assert re.fullmatch(r"run id=\d{8}-\d{6}-seed-example-[0-9a-f]{4} dir=\S+ time=\S+", run_line)
    assert first.startswith("epoch=1/2 iterations=16/16 steps=6 samples=1000 ")
    assert " batch_size=64 accum=3 " in first


@pytest.mark.slow
def test_batch_growth_schedule_in_headless_run():
    result = trainmon("--epochs", "3", "--batch-growth", "2", "--max-batch-size", "100")
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch=")]
    assert [re.search(r"iterations=(\d+)/", line).group(1) for line in lines] == ["45", "23", "15"]
    assert [re.search(r"batch_size=(\d+)", line).group(1) for line in lines] == ["32", "64", "100"]


@pytest.mark.slow
def test_headless_ctrl_c_stops_cleanly_with_consistent_counters():
    import signal
    import time

    proc = subprocess.Popen([TRAINMON, "--epochs", "500", "--headless"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("run id=")
    first = proc.stdout.readline()  # an epoch ended (or a progress line came): training is under way
    assert first.startswith(("epoch=1/500", "progress epoch=1/500"))
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "stopping after the current iteration" in err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("stopped ")
    fields = dict(item.split("=", 1) for item in summary.split()[1:])
    assert fields["iterations"] == fields["steps"]  # accum 1: every finished iteration was stepped


@pytest.mark.slow
def test_plan_of_a_huge_epoch_counts_windows_instead_of_listing_them():
    result = trainmon("plan", "--samples", "100000000000", "--batch-size", "1", "--accum", "3", "--json")
    assert result.returncode == 0, result.stderr
    epoch = json.loads(result.stdout)["epochs"][0]
    assert epoch["window_sizes"] is None
    assert (epoch["iterations"], epoch["full_windows"], epoch["last_window_size"], epoch["optimizer_steps"]) == (
        100_000_000_000, 33_333_333_333, 1, 33_333_333_334)
    human = " ".join(trainmon("plan", "--samples", "100000000000", "--batch-size", "1", "--accum", "3").stdout.split())
    assert "total optimizer steps 33333333334" in human
    assert "the last window of each epoch holds 1 of 3 micro-batches" in human


@pytest.mark.slow
def test_plan_with_no_samples_says_nothing_would_train():
    result = trainmon("plan", "--samples", "0", "--batch-size", "4")
    assert result.returncode == 0, result.stderr
    assert "note: no samples: nothing would train." in result.stdout
    data = json.loads(trainmon("plan", "--samples", "0", "--batch-size", "4", "--json").stdout)
    assert data["epochs"][0] == {"epoch": 1, "batch_size": 4, "accum": 1, "iterations": 0, "last_batch_size": 0,
                                 "window_sizes": [], "full_windows": 0, "last_window_size": 0,
                                 "optimizer_steps": 0, "samples": 0, "effective_batch_size": 4, "last_epoch": 1}


@pytest.mark.slow
def test_plan_speaks_of_one_sample_and_one_iteration():
    text = " ".join(trainmon("plan", "--samples", "1", "--batch-size", "64").stdout.split())
    assert "trainmon plan — 1 sample per epoch" in text
    assert "1 // 64 = 0 undercounts; the loader yields 1 iteration, the last holding 1 sample." in text
    text = " ".join(trainmon("plan", "--samples", "65", "--batch-size", "64").stdout.split())
    assert "65 // 64 = 1 undercounts; the loader yields 2 iterations, the last holding 1 sample." in text


@pytest.mark.slow
def test_plan_with_a_job_takes_its_batch_size_accum_and_epochs():
    data = json.loads(trainmon("plan", "--job", "seed-example", "--json").stdout)
    assert [(e["epoch"], e["last_epoch"]) for e in data["epochs"]] == [(1, 10)]
    assert (data["epochs"][0]["batch_size"], data["epochs"][0]["accum"], data["epochs"][0]["iterations"]) == (64, 1, 16)
    assert (data["total_iterations"], data["total_samples"]) == (160, 10000)
    data = json.loads(trainmon("plan", "--job", "seed-example", "--epochs", "2", "--accum", "3",
                               "--batch-size", "100", "--json").stdout)
    assert [(e["last_epoch"], e["batch_size"], e["accum"], e["iterations"], e["optimizer_steps"])
            for e in data["epochs"]] == [(2, 100, 3, 10, 4)]


@pytest.mark.slow
@pytest.mark.parametrize("before", [["--epochs", "1"], ["--job", "seed-example"], ["--seed", "0"]])
def test_run_options_before_a_command_are_refused(before):
    result = trainmon(*before, "plan", "--samples", "10", "--batch-size", "2")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "trainmon: error: options before 'plan' are run options; put command options after the command"]


def _pipe_into_one_line_reader(*args: str) -> tuple[int, str, str]:
    """Run trainmon into a process that reads one line and exits: (trainmon's status, its stderr, the line read)."""
    reader = subprocess.Popen([sys.executable, "-c", "import sys; print(sys.stdin.readline(), end='')"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc = subprocess.Popen([TRAINMON, *args], stdout=reader.stdin, stderr=subprocess.PIPE, text=True)
    reader.stdin.close()  # only the reader holds the pipe's read end, and it closes it after one line
    try:
        err = proc.stderr.read()
        status = proc.wait(timeout=120)
    finally:
        proc.kill()
    line = reader.stdout.read()
    reader.wait(timeout=30)
    return status, err, line


@pytest.mark.slow
def test_closed_pipe_ends_plan_quietly():
    # 2000 epochs growing by 1% make ~160 kB of table (one row per batch size), more than a pipe holds, so
    # trainmon is still writing when the reader goes away: SIGPIPE ends it (141 in a shell), no BrokenPipeError.
    status, err, line = _pipe_into_one_line_reader("plan", "--samples", "1000000", "--batch-size", "1",
                                                    "--accum", "3", "--epochs", "2000", "--batch-growth", "1.01",
                                                    "--max-batch-size", "1000000")
    assert "trainmon plan — 1000000 samples per epoch" in line
    assert err == "" and status == -signal.SIGPIPE


@pytest.mark.slow
def test_closed_pipe_ends_a_headless_run_quietly():
    status, err, line = _pipe_into_one_line_reader("--job", "seed-example", "--epochs", "2", "--headless")
    assert line.startswith("run id=")  # the first line names the run; the next write meets the closed pipe
    # training stops like on SIGHUP (a checkpoint saved, the run recorded as stopped) and exits 128 + SIGPIPE
    assert err == "" and status == 128 + signal.SIGPIPE


@pytest.mark.slow
def test_devices_table_leaves_out_this_commands_own_process():
    result = trainmon("devices", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "RAM used / total MiB" in result.stdout and "CPUs" in result.stdout
    assert "process RSS" not in result.stdout and "process CPU" not in result.stdout
    before = time.time()
    data = json.loads(trainmon("devices", "--json", timeout=120).stdout)
    assert list(data)[:2] == ["time", "timestamp"]
    assert before - 1 <= data["timestamp"] <= time.time() + 1  # seconds since the epoch, not monotonic
    assert data["host"]["process_rss_mib"] > 0  # the JSON keeps every field


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(lr=float("inf")), "learning rate must be > 0 and finite, got inf"),
        (dict(lr=float("nan")), "learning rate must be > 0 and finite, got nan"),
        (dict(lr=-0.1), "learning rate must be > 0 and finite, got -0.1"),
        (dict(batch_size=64, max_batch_size=10), "max batch size 10 is below the batch size 64"),
        (dict(batch_size=2**31), "batch size must be at most 2147483647, got 2147483648"),
        (dict(seed=2**63), "seed must be a whole number from 0 to 9223372036854775807, got 9223372036854775808"),
        (dict(seed=-1), "seed must be a whole number from 0 to 9223372036854775807, got -1"),
        (dict(batch_size=64, batch_growth=10.0, epochs=400),
         "batch growth 10 takes the batch size above 2147483647 at epoch 9 (from 64); cap it with --max-batch-size"),
    ],
)
def test_run_config_rejects_values_out_of_range(overrides, message):
    from trainmon.engine.core.arithmetic import PlanError
    from trainmon.engine.jobs.job import RunConfig

    with pytest.raises(PlanError) as info:
        RunConfig(**overrides).validate()
    assert str(info.value) == message


def test_run_config_accepts_the_edges():
    from trainmon.engine.jobs.job import RunConfig

    RunConfig(batch_size=2**31 - 1, seed=2**63 - 1, lr=1e-12).validate()
    RunConfig(batch_size=64, batch_growth=10.0, epochs=8).validate()  # 64 · 10^7 = 6.4e8 fits
    RunConfig(batch_size=64, batch_growth=10.0, epochs=400, max_batch_size=1000).validate()
    RunConfig(batch_size=64, max_batch_size=64).validate()


def test_resolve_device_accepts_only_devices_that_exist(monkeypatch):
    import torch

    from trainmon.engine.core.arithmetic import PlanError
    from trainmon.engine.jobs.job import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    for name, message in [("cpu:5", "device 'cpu:5': the CPU takes no index (use cpu)"),
                          ("xla", "unsupported device 'xla' (use auto, cpu, cuda, cuda:N or mps)"),
                          ("gpu", "unknown device 'gpu' (use auto, cpu, cuda, cuda:N or mps)")]:
        with pytest.raises(PlanError) as info:
            resolve_device(name)
        assert str(info.value) == message
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(PlanError, match="^device 'mps' asked for but MPS is not available here$"):
        resolve_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(PlanError, match=r"^device 'cuda:2' does not exist \(2 CUDA device\(s\)\)$"):
        resolve_device("cuda:2")


GROWING_JOB = '''
import torch
from torch import nn
from torch.utils.data import TensorDataset
from trainmon.engine import Job

def job():
    x = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0))
    return Job(name="grow", model=nn.Linear(4, 1), train_dataset=TensorDataset(x, x.sum(1, keepdim=True)),
               loss_fn=nn.functional.mse_loss, epochs=2, batch_size=64, drop_last=True, batch_growth=2.0,
               max_batch_size=128, lr=0.01)
'''


@pytest.mark.slow
@pytest.mark.parametrize("options, iterations, samples", [
    ([], 22, 1856),  # the job's drop_last, growth and cap: 15 + 7 iterations, 960 + 896 samples
    (["--no-drop-last", "--max-batch-size", "100"], 26, 2000),  # options override them: 16 + 10, 1000 + 1000
])
def test_plan_of_a_job_is_what_the_run_does(tmp_path, options, iterations, samples):
    path = tmp_path / "grow.py"
    path.write_text(GROWING_JOB)
    data = json.loads(trainmon("plan", "--job", str(path), *options, "--json").stdout)
    assert (data["total_iterations"], data["total_samples"]) == (iterations, samples)
    result = trainmon("run", str(path), "--headless", *options)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith(f"finished epochs=2 iterations={iterations} steps={iterations} "
                                                     f"samples={samples} ")


@pytest.mark.slow
def test_plan_costs_the_same_for_5_epochs_as_for_10_to_the_8():
    def plan(epochs: str, *extra: str) -> str:
        result = trainmon("plan", "--samples", "1000", "--batch-size", "64", "--drop-last", "--epochs", epochs, *extra)
        assert result.returncode == 0, result.stderr
        return result.stdout

    small, huge = json.loads(plan("5", "--json")), json.loads(plan("100000000", "--json"))
    assert [(e["epoch"], e["last_epoch"]) for e in huge["epochs"]] == [(1, 100_000_000)]
    assert (huge["total_iterations"], huge["total_samples"]) == (1_500_000_000, 96_000_000_000)
    assert len(huge["epochs"]) == len(small["epochs"]) == 1
    # a growing, capped schedule: one entry per distinct batch size, however many epochs follow
    grown = json.loads(plan("100000000", "--batch-growth", "2", "--max-batch-size", "256", "--json"))
    assert [(e["epoch"], e["last_epoch"], e["batch_size"]) for e in grown["epochs"]] == [
        (1, 1, 64), (2, 2, 128), (3, 100_000_000, 256)]
    assert "1–5 " in " ".join(plan("5").split()) and "3–100000000 " in " ".join(
        plan("100000000", "--batch-growth", "2", "--max-batch-size", "256").split())


@pytest.mark.slow
def test_run_start_up_does_not_grow_with_epochs_and_sigterm_ends_with_a_stopped_line(tmp_path):
    import signal

    path = tmp_path / "grow.py"
    path.write_text(GROWING_JOB)
    with open(tmp_path / "log.txt", "w") as log:
        proc = subprocess.Popen([TRAINMON, "run", str(path), "--headless", "--epochs", "100000000"], stdout=log,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120  # with 10^8 epochs planned one by one this took minutes and GBs
        while "epoch=1/100000000 " not in (tmp_path / "log.txt").read_text():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 143
    last = (tmp_path / "log.txt").read_text().splitlines()[-1]
    assert last.startswith("stopped epochs=") and " samples=" in last


@pytest.mark.slow
def test_headless_failure_ends_stdout_in_a_file_with_the_failed_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text(GROWING_JOB.replace("loss_fn=nn.functional.mse_loss", "loss_fn=lambda o, t: 1 / 0 if o.requires_grad "
                                                                          "else (o - t).pow(2).mean()"))
    with open(tmp_path / "log.txt", "w") as log:
        code = subprocess.run([TRAINMON, "run", str(path), "--headless"], stdout=log, stderr=subprocess.PIPE,
                              timeout=240).returncode
    assert code == 1
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert lines[-1].startswith('failed phase=training message="ZeroDivisionError: division by zero (at broken.py:')
