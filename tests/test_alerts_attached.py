"""Issue 23 item 5 in real terminals: a viewer watching when the loss turns NaN hears it once (the bell
and an OSC 9 desktop notification, in the bytes it writes to its terminal) and shows the badge; a viewer
that attaches later shows the badge from the replayed events and rings nothing."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest
from engines import row, trainmon, wait_until
from tmux import needs_tmux

TRAINMON = str(Path(sys.executable).with_name("trainmon"))
pytestmark = [needs_tmux, pytest.mark.slow]
# inside tmux the OSC 9 comes wrapped for tmux to pass on (tui.alerts.osc9)
NOTICE = b"\a\x1bPtmux;\x1b\x1b]9;trainmon nan: the loss is nan at global iteration "

# a job whose loss turns NaN, and stays NaN, once the test creates the file GO
JOB = textwrap.dedent('''
    import os
    import time

    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    from trainmon.engine import Job

    GO = {go!r}


    def loss_fn(out, y):
        time.sleep(0.01)  # about 100 iterations a second: the run lasts while the test looks
        loss = nn.functional.mse_loss(out, y)
        return loss * float("nan") if os.path.exists(GO) else loss


    def job():
        x = torch.randn(320, 4, generator=torch.Generator().manual_seed(0))
        return Job(name="turns-nan", model=nn.Linear(4, 1), train_dataset=TensorDataset(x, x.sum(1, keepdim=True)),
                   loss_fn=loss_fn, epochs=1000, batch_size=32, lr=0.05)
''')


@pytest.mark.timeout(240)
def test_a_watching_viewer_rings_once_and_a_late_one_shows_the_badge_silently(tmux, tmp_path):
    go = tmp_path / "go"
    job = tmp_path / "job.py"
    job.write_text(JOB.format(go=str(go)))
    started = trainmon("run", str(job), "--detach", "--no-checkpoints")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    try:
        watching, seen = tmux(f"{TRAINMON} attach {run_id}", 100, 30), tmp_path / "watching.out"
        watching.wait_for("RUNNING")
        watching.record_output(seen)
        go.touch()
        screen = watching.wait_for("⚠ 1 alert · nan", timeout=60)
        assert "a: list" in screen
        wait_until(lambda: NOTICE in seen.read_bytes(), timeout=30, what="the OSC 9 notification")
        time.sleep(2)  # the loss stays NaN: no second notification comes
        assert seen.read_bytes().count(b"\x1b]9;") == 1

        late, heard = tmux(f"sleep 1; {TRAINMON} attach {run_id}", 100, 30), tmp_path / "late.out"
        late.record_output(heard)  # before the viewer starts (it waits a second)
        screen = late.wait_for("⚠ 1 alert · nan", timeout=60)
        late.keys("a")
        assert "Alerts — 1, newest first" in late.wait_for("Alerts — 1")
        time.sleep(1)
        assert b"\x1b]9;" not in heard.read_bytes() and len(heard.read_bytes()) > 1000  # it drew, and rang nothing
        assert seen.read_bytes().count(b"\x1b]9;") == 1
    finally:
        stopped = trainmon("stop", run_id, timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert row(run_id)["status"] == "stopped"
