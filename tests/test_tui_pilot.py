"""The app over a real engine (a thread running the digits job): keys change the real run."""

from __future__ import annotations

import asyncio

import pytest

from trainmon.engine.core import messages as msg
from trainmon.engine.jobs import JobSpec
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.run.threaded import ThreadRun
from trainmon.tui.app import TrainmonApp
from trainmon.tui.widgets.status_pane import StatusPane


def paused_digits_run(epochs: int = 3) -> ThreadRun:
    job = JobSpec("digits").build()
    run = ThreadRun(job, RunConfig.for_job(job, epochs=epochs))
    run.send(msg.Pause())  # the run starts paused, before its first iteration
    return run.start()


async def settle(pilot, app, predicate, timeout: float = 30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        await pilot.pause(0.05)
        if predicate(app.snapshot):
            return app.snapshot
    raise AssertionError(f"timed out; snapshot {app.snapshot}")


def status_text(app) -> str:
    return str(app.query_one(StatusPane).render())


@pytest.mark.slow
async def test_pause_freezes_resume_moves_and_step_advances_one():
    run = paused_digits_run(epochs=400)  # long enough that q always lands mid-run
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, lambda s: s.status == msg.PAUSED)
        assert app.snapshot.global_iteration == 0
        await pilot.press("n")
        await settle(pilot, app, lambda s: s.global_iteration == 1)
        await pilot.pause(0.4)
        assert app.snapshot.global_iteration == 1 and app.snapshot.status == msg.PAUSED
        await pilot.press("space")
        await settle(pilot, app, lambda s: s.status == msg.RUNNING and s.global_iteration > 5)
        await pilot.press("space")
        frozen = (await settle(pilot, app, lambda s: s.status == msg.PAUSED)).global_iteration
        await pilot.pause(0.5)
        assert app.snapshot.global_iteration == frozen
        assert "PAUSED" in status_text(app)
        await pilot.press("p")
        await settle(pilot, app, lambda s: s.global_iteration > frozen)
        await pilot.press("q", "y")  # q asks first, y confirms the stop
        await pilot.pause(0.5)
    run.join(10)
    assert not run.alive
    assert run.result.stopped


async def test_plus_shows_pending_change_and_next_epoch_runs_at_new_size():
    run = paused_digits_run(epochs=2)
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, lambda s: s.status == msg.PAUSED)
        await pilot.press("plus")
        await settle(pilot, app, lambda s: bool(s.pending))
        assert "batch size 32 → 64 at start of epoch 2" in status_text(app)
        await pilot.press("space")
        snap = await settle(pilot, app, lambda s: s.epoch == 2)
        assert snap.batch_size == 64 and snap.iterations_in_epoch == 23
        assert any(label == "b 32→64" for _, label in app.query_one("#loss").markers)
        await settle(pilot, app, lambda s: app.finished_event is not None)
        assert app.check_action("grow_batch", ()) is None  # dimmed once the run is over
        await pilot.press("q")
    assert app.return_code == 0


@pytest.mark.slow
async def test_b_with_bad_input_changes_nothing_and_good_input_applies():
    run = paused_digits_run(epochs=3)
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, lambda s: s.status == msg.PAUSED)
        await pilot.press("b")
        await pilot.pause(0.1)
        await pilot.press("0", "enter")
        await pilot.pause(0.1)
        error = str(app.screen.query_one("#dialog-error").render())
        assert "batch size must be ≥ 1, got 0" in error and "nothing changed" in error
        await pilot.press("escape")
        await pilot.pause(0.5)
        assert app.snapshot.pending == () and app.snapshot.batch_size == 32
        await pilot.press("b")
        await pilot.pause(0.1)
        await pilot.press("1", "0", "0", "enter")
        snap = await settle(pilot, app, lambda s: bool(s.pending))
        assert snap.pending[0].new == 100
        await pilot.press("q", "y")  # q asks first, y confirms the stop
        await pilot.pause(0.3)
    run.join(10)
    assert not run.alive


@pytest.mark.slow
async def test_accum_keys_and_dimming():
    run = paused_digits_run(epochs=30)
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, lambda s: s.status == msg.PAUSED)
        assert app.check_action("accum_down", ()) is None  # k = 1 cannot go lower
        assert app.check_action("step_once", ()) is True
        await pilot.press("right_square_bracket", "right_square_bracket")
        snap = await settle(pilot, app, lambda s: bool(s.pending) and s.pending[0].new == 3)
        assert snap.pending[0].what == "accumulation steps"
        await pilot.press("n")
        snap = await settle(pilot, app, lambda s: s.global_iteration == 1)
        assert snap.accum == 3 and snap.window_position == 1 and snap.window_size == 3
        accum_text = str(app.query_one("#accum").render())
        assert "■□□ 1/3" in accum_text and "32 × 3 = 96" in accum_text
        await pilot.press("space")
        await settle(pilot, app, lambda s: s.status == msg.RUNNING)
        assert app.check_action("step_once", ()) is None  # only while paused
        await pilot.press("q", "y")  # q asks first, y confirms the stop
        await pilot.pause(0.5)


async def test_failure_shows_traceback_and_exit_code_is_1():
    from trainmon.engine.jobs.builtin import digits_job

    job = digits_job()

    def broken_loss(out, target):
        raise RuntimeError("loss exploded on purpose")

    job.loss_fn = broken_loss
    run = ThreadRun(job, RunConfig.for_job(job, epochs=1)).start()
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if app.failed_event is not None:
                break
        await pilot.pause(0.2)
        assert "RuntimeError: loss exploded on purpose" in str(app.screen.query_one("#failure-title").render())
        assert "broken_loss" in str(app.screen.query_one("#traceback").render())
        await pilot.press("q")
    assert app.return_code == 1


@pytest.mark.slow
async def test_quick_repeated_keys_all_count():
    run = paused_digits_run(epochs=30)
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, lambda s: s.status == msg.PAUSED)
        await pilot.press("right_square_bracket", "right_square_bracket", "right_square_bracket")
        await pilot.press("plus", "plus")
        await settle(pilot, app, lambda s: len(s.pending) == 2)
        await pilot.pause(0.3)
        pending = {p.what: p.new for p in app.snapshot.pending}
        assert pending == {"accumulation steps": 4, "batch size": 128}
        await pilot.press("n", "n", "n")
        await settle(pilot, app, lambda s: s.global_iteration == 3)
        await pilot.pause(0.4)
        assert app.snapshot.global_iteration == 3 and app.snapshot.status == msg.PAUSED
        await pilot.press("q", "y")  # q asks first, y confirms the stop
        await pilot.pause(0.3)


async def test_no_color_draws_without_crashing(monkeypatch):
    from fakes import ScriptedRun, digits_mid_run

    monkeypatch.setenv("NO_COLOR", "1")
    app = TrainmonApp(ScriptedRun(digits_mid_run()))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.1)
        app.poll_engine()
        app.draw_chart()
        await pilot.pause(0.3)
        assert "Loss" in app.export_screenshot()
    assert app.return_code in (None, 0)


async def test_ctrl_c_stops_and_exits_130():
    run = paused_digits_run(epochs=30)
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, lambda s: s.status == msg.PAUSED)
        await pilot.press("ctrl+c")
        await pilot.pause(1.0)
    run.join(10)
    assert not run.alive
    assert app.return_code == 130


@pytest.mark.slow
async def test_a_paused_run_repaints_only_its_elapsed_time():
    """Over SSH every repaint costs bytes: while paused the chart is not redrawn (no new points) and
    no pane repaints except the elapsed-time line, even at the fastest refresh rates."""
    from collections import Counter

    from textual_plot import PlotWidget

    run = paused_digits_run(epochs=400)  # long enough that q always lands mid-run
    app = TrainmonApp(run, refresh_hz=10, chart_hz=10)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, lambda s: s.status == msg.PAUSED)
        await pilot.press("n")
        await settle(pilot, app, lambda s: s.global_iteration == 1 and s.status == msg.PAUSED)
        await pilot.pause(0.6)  # the chart has drawn the new point
        repaints: Counter = Counter()
        for widget in app.query("*"):
            def counting(*args, _widget=widget, _refresh=widget.refresh, **kwargs):
                repaints[_widget.id or type(_widget).__name__] += 1
                return _refresh(*args, **kwargs)

            widget.refresh = counting
        plot = app.query_one(PlotWidget)
        chart_redraws = []
        clear = plot.clear
        plot.clear = lambda *args, **kwargs: (chart_redraws.append(1), clear(*args, **kwargs))[1]
        await pilot.pause(2.5)
        assert app.snapshot.status == msg.PAUSED and app.snapshot.global_iteration == 1
        assert chart_redraws == []
        assert set(repaints) <= {"elapsed"}, repaints
        await pilot.press("q", "y")  # q asks first, y confirms the stop
        await pilot.pause(0.3)
    run.join(10)
