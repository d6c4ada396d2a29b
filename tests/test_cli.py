"""The CLI, run as a user runs it: a real `trainmon` process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

TRAINMON = str(Path(sys.executable).with_name("trainmon"))
EPOCH_LINE = re.compile(
    r"^epoch=(\d+)/(\d+) iterations=(\d+)/(\d+) steps=(\d+) samples=(\d+) train_loss=(\S+) val_loss=(\S+)"
    r" val_acc=(\S+) batch_size=(\d+) accum=(\d+) lr=(\S+) elapsed=[\d.]+s"
)


def trainmon(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([TRAINMON, *args], capture_output=True, text=True, timeout=timeout)


def test_plan_json_reports_16_iterations():
    result = trainmon("plan", "--samples", "1000", "--batch-size", "64", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["epochs"][0]["iterations"] == 16 and data["epochs"][0]["last_batch_size"] == 40
    assert data["total_iterations"] == 16


def test_plan_json_full_example():
    result = trainmon("plan", "--samples", "1000", "--batch-size", "64", "--accum", "4", "--epochs", "2", "--json")
    data = json.loads(result.stdout)
    assert result.stdout.count("\n") == 1
    assert data["epochs"][1] == {"epoch": 2, "batch_size": 64, "accum": 4, "iterations": 16, "last_batch_size": 40,
                                 "window_sizes": [4, 4, 4, 4], "optimizer_steps": 4, "samples": 1000,
                                 "effective_batch_size": 256}
    assert (data["total_iterations"], data["total_optimizer_steps"], data["total_samples"],
            data["effective_batch_size"]) == (32, 8, 2000, 256)


def test_plan_human_readable_explains_the_undercount():
    result = trainmon("plan", "--samples", "1000", "--batch-size", "64", "--drop-last")
    assert result.returncode == 0
    assert "total iterations 15" in result.stdout and "total samples 960" in result.stdout
    result = trainmon("plan", "--job", "seed-example", "--batch-size", "64")
    assert "1000 // 64 = 15 undercounts; the loader yields 16 iterations" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--samples", "1000", "--batch-size", "0"], "batch size must be a whole number >= 1"),
        (["--samples", "1000", "--batch-size", "64", "--accum", "0"], "accumulation steps must be"),
        (["--samples", "-5", "--batch-size", "64"], "samples must be >= 0"),
        (["--samples", "10", "--batch-size", "64", "--drop-last"], "drop_last drops them all"),
        (["--samples", "ten", "--batch-size", "64"], "'ten' is not a valid integer"),
        (["--batch-size", "64"], "give --samples N or --job NAME"),
    ],
)
def test_plan_bad_input_exits_2_with_one_line(args, fragment):
    result = trainmon("plan", *args, "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and lines[0].startswith("trainmon: error:")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--batch-size", "0"], "batch size must be"),
        (["--epochs", "-1"], "epochs must be"),
        (["--accum", "0"], "accumulation steps must be"),
        (["--device", "cuda:7"], "device"),
        (["--job", "nope"], "unknown job 'nope'"),
        (["--batch-size", "5000", "--drop-last"], "drop_last drops them all"),
    ],
)
def test_run_bad_options_exit_2_with_one_line(args, fragment):
    result = trainmon("--headless", *args, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


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
    assert all(re.search(r" peak_rss_mib=\d+$", line) for line in lines if line.startswith("epoch="))
    assert lines[-1].startswith("finished epochs=5 iterations=225 steps=225 samples=7185")


def test_headless_seed_example_with_accumulation():
    result = trainmon("--job", "seed-example", "--epochs", "2", "--accum", "3", "--headless")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("epoch=1/2 iterations=16/16 steps=6 samples=1000 ")
    assert " batch_size=64 accum=3 " in first


def test_batch_growth_schedule_in_headless_run():
    result = trainmon("--epochs", "3", "--batch-growth", "2", "--max-batch-size", "100")
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch=")]
    assert [re.search(r"iterations=(\d+)/", line).group(1) for line in lines] == ["45", "23", "15"]
    assert [re.search(r"batch_size=(\d+)", line).group(1) for line in lines] == ["32", "64", "100"]


def test_headless_ctrl_c_stops_cleanly_with_consistent_counters():
    import signal
    import time

    proc = subprocess.Popen([TRAINMON, "--epochs", "500", "--headless"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # an epoch has ended: training is under way
    assert first.startswith("epoch=1/500")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "stopping after the current iteration" in err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("stopped ")
    fields = dict(item.split("=", 1) for item in summary.split()[1:])
    assert fields["iterations"] == fields["steps"]  # accum 1: every finished iteration was stepped
