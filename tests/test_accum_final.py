"""Issue 9 item 14: once the run has ended, the accumulation pane shows what happened, not a stale window."""

from __future__ import annotations

from pathlib import Path

from fakes import ScriptedRun, digits_mid_run

from trainmon.engine.core import messages as msg
from trainmon.engine.jobs import JobSpec
from trainmon.engine.jobs.job import RunConfig
from trainmon.engine.run.threaded import ThreadRun
from trainmon.tui.app import TrainmonApp
from trainmon.tui.widgets.accum_pane import AccumPane


def finished(snapshot: msg.Snapshot, stopped: bool) -> msg.Finished:
    return msg.Finished(stopped=stopped, epochs_completed=snapshot.epoch, global_iteration=snapshot.global_iteration,
                        global_step=snapshot.global_step, samples_seen=snapshot.samples_seen, elapsed=30.0,
                        train_loss=0.3, val_loss=None, val_metrics={})


async def pane_text(snapshot: msg.Snapshot, events: list, status=None) -> str:
    app = TrainmonApp(ScriptedRun(snapshot, events=events))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.poll_engine()
        pane = app.query_one(AccumPane)
        if status is not None:
            pane.show(app.snapshot, status)
        await pilot.pause()
        return str(pane.render())


async def test_finished_run_shows_steps_and_that_the_last_window_was_stepped():
    # the example: the engine's last snapshot of the digits run (k=4) read "window □ 0/1 · 0 samples (short)"
    s = digits_mid_run(status=msg.FINISHED, epoch=5, iteration_in_epoch=45, global_iteration=225, global_step=60,
                       steps_in_epoch=12, samples_seen=7185, window_position=0, window_size=1, window_samples=0)
    text = await pane_text(s, [finished(s, stopped=False)])
    assert text.splitlines() == [
        "run finished · 60 optimizer steps",
        "last window stepped",
        "k = 4 · effective batch size 32 × 4 = 128",
    ]


async def test_stopped_at_a_window_boundary_has_no_next_step():
    # the other stale text of the issue: "next in 4 iterations" after the run had ended
    s = digits_mid_run(status=msg.STOPPED, window_position=0, window_size=4, window_samples=0, global_step=17)
    text = await pane_text(s, [finished(s, stopped=True)])
    assert "next in" not in text
    assert text.splitlines()[:2] == ["run stopped · 17 optimizer steps", "last window stepped"]


async def test_stopped_inside_a_window_names_the_micro_batches_never_stepped():
    s = digits_mid_run(status=msg.STOPPED, window_position=2, window_size=4, window_samples=64, global_step=17,
                       pending=(msg.PendingChange("accumulation steps", 4, 6, "next window"),))
    text = await pane_text(s, [finished(s, stopped=True)])
    assert text.splitlines() == [
        "run stopped · 17 optimizer steps",
        "window ■■□□ 2/4 · 64 samples, not stepped",
        "k = 4 · effective batch size 32 × 4 = 128",
        "k 4 → 6 was pending, never applied",
    ]


async def test_status_known_to_the_viewer_wins_over_a_running_snapshot():
    # a killed engine sends no last snapshot: the viewer's own status (FAILED, LOST) says the run has ended
    s = digits_mid_run(accum=1, window_size=1, window_position=0, window_samples=0, global_step=67)
    text = await pane_text(s, [], status=msg.LOST)
    assert text.splitlines()[:2] == ["run lost · 67 optimizer steps", "each iteration was an optimizer step"]
    assert "k = 1 · effective batch size 32" in text


async def test_running_window_still_counts_down():
    text = await pane_text(digits_mid_run(), [])
    assert text.splitlines()[2] == "optimizer steps 17 · next in 2 iterations"


async def test_real_digits_run_ends_with_the_final_state(tmp_path):
    job = JobSpec("digits").build()
    run = ThreadRun(job, RunConfig.for_job(job, epochs=1, accum=4)).start()
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(600):
            await pilot.pause(0.05)
            if app.finished_event is not None:
                break
        await pilot.pause(0.1)
        assert type(app.screen).__name__ == "SummaryScreen"  # the end of a run shows its summary (issue 26)
        await pilot.press("escape")  # back to the panes
        await pilot.pause(0.1)
        text = str(app.query_one(AccumPane).render())
        shot = app.save_screenshot("accum_final.svg", str(tmp_path))
    run.join(10)
    # 1437 samples at b=32: 45 iterations in windows 11 × 4 + 1, so 12 steps, the short one included
    assert text.splitlines()[:2] == ["run finished · 12 optimizer steps", "last window stepped"]
    assert "last&#160;window&#160;stepped" in Path(shot).read_text()  # the screenshot, written under tmp_path
