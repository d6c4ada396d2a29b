"""The runs screen (`r`) opening one run after another in the same monitor while its timers tick (a user saw
NoMatches tracebacks: a poll or a chart drawn while the chosen run's panes were being composed), and its table
opened over a finished run's summary keeping every value whole (a user saw `126/30` for `126/300`)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from engines import trainmon

pytestmark = pytest.mark.slow  # one real headless run


def copies(source: Path, home: Path, count: int) -> list[str]:
    ids = []
    for i in range(count):
        run_id = f"20261202-{i:06d}-digits-{i:04x}"
        shutil.copytree(source, home / "runs" / run_id, ignore=shutil.ignore_patterns("*.sock", "checkpoints"))
        info = json.loads((home / "runs" / run_id / "run.json").read_text())
        info.update(id=run_id, started_unix=1_796_100_000 + i)
        (home / "runs" / run_id / "run.json").write_text(json.dumps(info))
        ids.append(run_id)
    return ids


@pytest.mark.timeout(180)
async def test_switching_runs_while_the_timers_tick_and_the_table_over_a_summary(trainmon_home):
    from rich.cells import cell_len
    from textual.widgets import DataTable

    from trainmon.engine.control.replay import RecordedRun
    from trainmon.engine.record.rundir import read_run
    from trainmon.tui.app import TrainmonApp
    from trainmon.tui.screens.runs_screen import RunsScreen
    from trainmon.tui.screens.summary_screen import SummaryScreen
    from trainmon.tui.widgets.status_pane import StatusPane

    done = trainmon("--headless", "--epochs", "1", "--no-checkpoints")
    assert done.returncode == 0, done.stderr
    source = Path(re.match(r"^run id=\S+ dir=(\S+) ", done.stdout).group(1))
    ids = copies(source, trainmon_home, 3)
    first = read_run(trainmon_home / "runs" / ids[0])
    app = TrainmonApp(RecordedRun(first), refresh_hz=100, chart_hz=100, run_id=first.id)  # timers every 10 ms
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        for run_id in ids[1:] + ids[:1] + ids[1:]:
            await app._open_chosen(str(trainmon_home / "runs" / run_id))  # what Enter on the runs screen does
            await pilot.pause(0.05)
            assert app.run_id == run_id
        await pilot.pause(0.2)
        assert isinstance(app.screen, SummaryScreen)  # the last one opened ended: its summary is shown
        await pilot.press("r")  # over the summary (the sequence the user saw cut values after)
        await pilot.pause(0.3)
        await pilot.press("escape")
        await pilot.pause(0.2)
        await pilot.press("r")
        await pilot.pause(0.5)
        assert isinstance(app.screen, RunsScreen), app.screen_stack
        table = app.screen.query_one(DataTable)
        assert table.row_count == 4
        for column in table.columns.values():
            cells = [str(table.get_cell(row, column.key)) for row in table.rows]
            assert column.width >= max(cell_len(c) for c in cells), (column.label, column.width, cells)
        await pilot.press("escape")
        await pilot.pause(0.2)
        while isinstance(app.screen, (SummaryScreen, RunsScreen)):
            await pilot.press("escape")
            await pilot.pause(0.2)
        assert ids[2] in str(app.query_one(StatusPane).render())
    assert app._exception is None
