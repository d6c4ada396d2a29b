"""Issue 24 items 3-4 live and in the browser: a detached run's timeline reaches a socket viewer as it grows, and in a
`trainmon serve` tab `x` changes the chart's axis, `m` the chart, `.` the smoothing; `o` and `c` (items 5-6) there too."""

from __future__ import annotations

import re

import pytest
from engines import start_detached, trainmon, wait_until
from test_serve import browser, needs_browser, open_and_watch, press, screen, served  # noqa: F401 - fixtures

from trainmon.engine.control.client import RunClient
from trainmon.engine.record.rundir import read_run


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_socket_viewer_gets_the_timeline_whole_then_as_it_grows():
    run_id, run_dir = start_detached("--epochs", "2000")
    try:
        client = RunClient(read_run(run_dir).socket_path).subscribe(steering=False)
        wait_until(lambda: client.poll() is not None and len(client.timeline) >= 3, timeout=60, interval=0.1,
                   what="rows from the engine")
        first = client.timeline.last()
        wait_until(lambda: client.poll() is not None and client.timeline.last().global_iteration
                   > first.global_iteration + 50, timeout=60, interval=0.1, what="newer rows")
        rows = client.timeline.rows()
        assert [r.global_iteration for r in rows] == sorted({r.global_iteration for r in rows})
        assert all(r.samples_seen >= 32 * r.global_iteration * 0.9 for r in rows)  # batches of 32 (one of 29 an epoch)
        client.close()
    finally:
        stopped = trainmon("stop", run_id, timeout=90)
    assert stopped.returncode == 0, stopped.stderr


@pytest.mark.slow
@needs_browser
@pytest.mark.timeout(240)
def test_a_browser_tab_changes_the_axis_the_chart_and_the_smoothing(served, browser):  # noqa: F811 - the fixtures
    run_id, _run_dir = start_detached("--epochs", "2000")
    try:
        server = served(run_id)
        text = open_and_watch(browser, server.url, run_id)
        assert "Loss · smoothing 0.9" in text and "global iteration" in text
        press(browser, "x")
        wait_until(lambda: "optimizer step" in screen(browser).split("Loss")[-1], timeout=30,
                   what="the chart's x axis titled optimizer step in the browser")
        press(browser, ".")
        wait_until(lambda: "Loss · smoothing 0.95" in screen(browser), timeout=30, what="the new weight in the title")
        press(browser, "m")
        wait_until(lambda: "Learning rate" in screen(browser), timeout=30, what="the learning-rate chart")
    finally:
        stopped = trainmon("stop", run_id, timeout=90)
    assert stopped.returncode == 0, stopped.stderr


PRINTING_JOB = '''
import time
import torch
from torch import nn
from torch.utils.data import TensorDataset
from trainmon.engine import Job

class Loud(nn.Linear):
    calls = 0

    def forward(self, x):
        Loud.calls += 1
        if self.training and Loud.calls % 4 == 0:
            print(f"the job's own line {Loud.calls}", flush=True)
        time.sleep(0.01)
        return super().forward(x)

def job():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    return Job(name="loud", model=Loud(4, 1), train_dataset=TensorDataset(x, x.sum(1, keepdim=True)),
               loss_fn=nn.functional.mse_loss, epochs=2000, batch_size=16, lr=0.05)
'''


@pytest.mark.slow
@needs_browser
@pytest.mark.timeout(240)
def test_a_browser_tab_shows_the_jobs_output_live_and_the_config(served, browser, tmp_path):  # noqa: F811 - fixtures
    """Issue 24 items 5-6 in a `trainmon serve` tab: `o` shows the job's prints as they come, `c` its settings."""
    (tmp_path / "loud.py").write_text(PRINTING_JOB)
    started = trainmon("run", str(tmp_path / "loud.py"), "--detach", "--lr", "0.03")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    try:
        server = served(run_id)
        open_and_watch(browser, server.url, run_id)
        press(browser, "o")
        first = wait_until(lambda: (t := screen(browser)) and "The job's output" in t
                           and (found := [int(n) for n in re.findall(r"the job's own line (\d+)", t)]) and max(found),
                           timeout=60, what="the job's prints in the browser")
        wait_until(lambda: max(int(n) for n in re.findall(r"the job's own line (\d+)", screen(browser)) or [0])
                   > first, timeout=60, what="newer prints, live")
        press(browser, "\ue00c")  # Escape
        press(browser, "c")
        wait_until(lambda: (t := screen(browser)) and "The run's config" in t and re.search(r"lr\s+0\.03", t),
                   timeout=30, what="the config in the browser")
    finally:
        stopped = trainmon("stop", run_id, timeout=90)
    assert stopped.returncode == 0, stopped.stderr
