"""`o` (the job's output) and `c` (the run's config) in the monitor, by Pilot: lines shown collapsed, following
live output (and not while scrolled up), ranks folded and chosen with `k`; the config of a real run."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from engines import trainmon
from rich.console import Console
from textual.app import App
from textual.widgets import RichLog, Static

from trainmon.engine.record.output_log import RotatingOutput
from trainmon.tui.screens.output_screen import OutputScreen

BAR_JOB = '''
import torch
from torch import nn
from torch.utils.data import TensorDataset
from trainmon.engine import Job

class Loud(nn.Linear):
    calls = 0

    def forward(self, x):
        Loud.calls += 1
        if Loud.calls == 2:
            print("training starts")
        if self.training:
            print(f"\\rbar {Loud.calls:3d} [" + "#" * (Loud.calls // 2) + "]", end="", flush=True)
        return super().forward(x)

def job():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    return Job(name="bars", model=Loud(4, 1), train_dataset=TensorDataset(x, x.sum(1, keepdim=True)),
               loss_fn=nn.functional.mse_loss, epochs=2, batch_size=16, lr=0.05)
'''


def log_lines(screen) -> list[str]:
    return [strip.text.rstrip() for strip in screen.query_one(RichLog).lines]


class Host(App):
    """The screen alone, over a run directory the test writes with the engine's own writer."""

    def __init__(self, run_dir: Path, live: bool = True) -> None:
        super().__init__()
        self.run_dir, self.live = run_dir, live

    def on_mount(self) -> None:
        self.push_screen(OutputScreen(self.run_dir, live=self.live))


async def test_output_follows_live_lines_and_the_bar_being_written(tmp_path):
    out = RotatingOutput(tmp_path)
    out.write(b"first\r\n" + b"".join(f"\rloading {i}%".encode() for i in range(0, 101, 10)) + b"\n")
    app = Host(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        screen = app.screen
        assert log_lines(screen) == ["first", "loading 100%"]
        out.write(b"epoch 1 done\n\r step 3/10")
        await pilot.pause(0.8)
        assert log_lines(screen)[-1] == "epoch 1 done"
        partial = screen.query_one("#output-partial", Static)
        assert partial.display and str(partial.render()).strip() == "step 3/10"  # the bar as it stands
        out.write(b"\r step 10/10\n")
        await pilot.pause(0.8)
        assert log_lines(screen)[-2:] == ["epoch 1 done", " step 10/10"] and not partial.display
        assert screen.query_one("#output-body").border_title == "The job's output — 4 lines · live"
        out.close()


async def test_output_follows_at_the_end_and_stays_where_scrolled_up(tmp_path):
    out = RotatingOutput(tmp_path)
    out.write(b"".join(f"line {i}\n".encode() for i in range(200)))
    app = Host(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        log = app.screen.query_one(RichLog)
        assert log.scroll_offset.y == log.max_scroll_y > 0  # opened at the end
        out.write(b"line 200\n")
        await pilot.pause(0.8)
        assert log.scroll_offset.y == log.max_scroll_y  # followed
        await pilot.press("home")
        await pilot.pause(0.2)
        out.write(b"line 201\n")
        await pilot.pause(0.8)
        assert log.scroll_offset.y == 0 and log_lines(app.screen)[-1] == "line 201"  # scrolled up: it stays
        await pilot.press("end")
        await pilot.pause(0.2)
        assert log.scroll_offset.y == log.max_scroll_y
        out.close()


async def test_ranks_fold_and_k_chooses_one(tmp_path):
    for rank, name in enumerate(["output.log", "output.rank1.log", "output.rank2.log"]):
        (tmp_path / name).write_text(f"loading data\nrank says {rank}\nready\n")
    app = Host(tmp_path, live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        screen = app.screen
        assert log_lines(screen) == ["ranks 0–2: loading data", "rank 0: rank says 0", "rank 1: rank says 1",
                                     "rank 2: rank says 2", "ranks 0–2: ready"]
        assert "all ranks" in screen.query_one("#output-body").border_title
        await pilot.press("k")
        await pilot.press("k")
        await pilot.pause(0.2)
        assert log_lines(screen) == ["loading data", "rank says 1", "ready"]
        assert "rank 1 of 3" in screen.query_one("#output-body").border_title
        await pilot.press("k", "k")  # rank 2, then all again
        await pilot.pause(0.2)
        assert log_lines(screen)[0] == "ranks 0–2: loading data"


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_o_and_c_on_a_real_run(tmp_path):
    from trainmon.engine.control.replay import RecordedRun
    from trainmon.engine.record.rundir import read_run
    from trainmon.tui.app import TrainmonApp
    from trainmon.tui.screens.config_screen import ConfigScreen
    from trainmon.tui.screens.summary_screen import SummaryScreen

    (tmp_path / "bars.py").write_text(BAR_JOB)
    result = trainmon("run", str(tmp_path / "bars.py"), "--headless", "--lr", "0.02", "--accum", "2")
    assert result.returncode == 0, result.stderr
    path = re.search(r"run id=\S+ dir=(\S+) ", result.stdout).group(1)
    run = read_run(Path(path))
    app = TrainmonApp(RecordedRun(run), run_id=run.id)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        if isinstance(app.screen, SummaryScreen):
            await pilot.press("escape")
        await pilot.press("o")
        await pilot.pause(0.3)
        assert isinstance(app.screen, OutputScreen)
        lines = log_lines(app.screen)
        # the preflight's forward comes before the run directory; then 8 iterations of a \r bar: its last state
        assert lines == ["training starts"]
        assert str(app.screen.query_one("#output-partial", Static).render()).strip() == "bar   9 [####]"  # no \n
        assert "live" not in app.screen.query_one("#output-body").border_title  # a finished run: read once
        await pilot.press("escape", "c")
        await pilot.pause(0.3)
        assert isinstance(app.screen, ConfigScreen)
        console = Console(width=78, record=True, file=io.StringIO())
        console.print(app.screen.query_one("#config", Static).content)
        text = console.export_text()
        rows = {line.split("  ", 1)[0].strip(): line.split("  ", 1)[-1].strip() for line in text.splitlines()
                if line.strip()}
        assert rows["lr"] == "0.02" and rows["accum"] == "2" and rows["batch size"] == "16"
        assert rows["effective batch size"].startswith("32  (b·k·world size = 16·2·1)")
        assert rows["python"] == sys.version.split()[0] and rows["torch"]
        assert rows["kind"] == "the trainmon engine" and rows["status"] == "finished"
        assert rows["recorded"].startswith("yes, in output.log (rotated at 16.0 MiB, 3 older")  # wrapped at 80
        assert "CPUs" in rows and "GPUs" in rows
