"""The status line tells a live run's phase, the age of its last iteration and where its time goes, from the
engine's heartbeat (a real digits run on a thread)."""

from __future__ import annotations

import pytest
from test_tui_pilot import settle, status_text

from trainmon.engine.core import messages as msg
from trainmon.engine.jobs import JobSpec
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.run.threaded import ThreadRun
from trainmon.tui.app import TrainmonApp


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_status_line_shows_the_last_iteration_and_the_data_wait():
    job = JobSpec("digits").build()
    run = ThreadRun(job, RunConfig.for_job(job, epochs=400)).start()
    app = TrainmonApp(run)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app, lambda s: s.status == msg.RUNNING and s.epoch >= 3 and s.liveness is not None
                     and s.liveness.data_wait is not None)
        await pilot.pause(0.3)
        text = status_text(app)
        assert "last it " in text and " ago" in text and "data wait " in text and "monitor " in text, text
        assert "stalled" not in text
        await pilot.press("q", "y")
        await pilot.pause(0.5)
    run.join(10)
    assert not run.alive
