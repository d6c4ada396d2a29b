"""Issue 26, items 11 and 13–17: the stop key asks, help's q closes help, colours that mean something, the end
of a run (a summary, devices marked as last read), an ended run without old toasts, the save key's answer."""

from __future__ import annotations

import msgspec
import pytest
from fakes import ScriptedRun, digits_mid_run
from textual.geometry import Region

from trainmon.engine.core import messages as msg
from trainmon.tui.app import TrainmonApp
from trainmon.tui.screens.confirm_stop import ConfirmStop
from trainmon.tui.screens.help_screen import HelpScreen
from trainmon.tui.screens.summary_screen import SummaryScreen
from trainmon.tui.summary import RunSummary
from trainmon.tui.widgets.status_pane import StatusPane


async def start(pilot) -> None:
    pilot.app.animation_level = "none"
    await pilot.pause()
    pilot.app.poll_engine()  # the first update: what a late viewer gets replayed
    await pilot.pause(0.05)


def toasts(app) -> list[tuple[str, str]]:
    return [(n.message, n.severity) for n in app._notifications]


def footer_keys(app) -> dict:
    """The footer's keys by their label (a CSS type selector: FooterKey is not public in textual.widgets)."""
    return {k.description: k for k in app.screen.query("FooterKey")}


def devices_text(app) -> str:
    return str(app.query_one("#devices-text").render())


def epoch_end(epoch: int, val_loss: float) -> msg.EpochEnded:
    return msg.EpochEnded(epoch=epoch, epochs=3, iterations=45, iterations_planned=45, steps=12, samples_seen=1437 * epoch,
                          train_loss=0.9 / epoch, val_loss=val_loss, val_metrics={}, batch_size=32, accum=4, lr=0.05,
                          elapsed=6.0 * epoch, global_iteration=45 * epoch, global_step=12 * epoch)


def finished(stopped: bool = False, epochs: int = 3) -> msg.Finished:
    return msg.Finished(stopped=stopped, epochs_completed=epochs, global_iteration=45 * epochs, global_step=12 * epochs,
                        samples_seen=1437 * epochs, elapsed=75.0, train_loss=0.3, val_loss=0.41, val_metrics={})


SAVED = msg.CheckpointSaved("/runs/r1/checkpoints/ckpt-000003.pt", 123456, 0.01, "epoch end", 3, 45, 135,
                            epoch_complete=True)


# ---- 11: q on the help screen closes help; q on the main screen asks before stopping ---------------


@pytest.mark.parametrize("key", ["q", "escape"])
async def test_q_and_esc_on_the_help_screen_close_help_and_stop_nothing(key):
    run = ScriptedRun(digits_mid_run())
    app = TrainmonApp(run)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.1)
        assert isinstance(app.screen, HelpScreen)
        assert "Close help" in footer_keys(app)  # the footer says what q and esc do there
        await pilot.press(key)
        await pilot.pause(0.1)
        assert not isinstance(app.screen, HelpScreen)
        assert run.sent == [] and app.return_code is None and app.is_running


async def test_the_help_screen_follows_the_run_while_it_is_open():
    """A new user's trial: `?` took the numbers as they were when it opened."""
    run = ScriptedRun(digits_mid_run())
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.1)
        def shown() -> str:
            return " ".join(app.export_screenshot().replace("&#160;", " ").split())

        assert "ceil(1437 / 32) = 45" in shown()
        run.later(digits_mid_run(epoch=3, iteration_in_epoch=10, global_iteration=100, batch_size=64,
                                 iterations_in_epoch=23, last_batch_size=29))
        app.poll_engine()
        await pilot.pause(1.3)  # the screen reads the newest snapshot every second
        assert isinstance(app.screen, HelpScreen)
        assert "ceil(1437 / 64) = 23" in shown() and "ceil(1437 / 32)" not in shown()


async def test_q_on_the_main_screen_is_labelled_stop_and_asks_first():
    run = ScriptedRun(digits_mid_run())
    app = TrainmonApp(run, run_id="r1")
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        assert "Stop" in footer_keys(app) and "Detach" in footer_keys(app)
        await pilot.press("q")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConfirmStop) and run.sent == []
        await pilot.press("n")  # keep it running
        await pilot.pause(0.1)
        assert not isinstance(app.screen, ConfirmStop) and run.sent == []
        await pilot.press("q", "y")
        await pilot.pause(0.1)
        assert run.sent == [msg.Stop()] and app.status == msg.STOPPING


async def test_q_twice_stops_and_d_on_the_question_detaches():
    run = ScriptedRun(digits_mid_run())
    app = TrainmonApp(run)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        await pilot.press("q", "q")
        await pilot.pause(0.1)
        assert run.sent == [msg.Stop()]
    run = ScriptedRun(digits_mid_run())
    app = TrainmonApp(run)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        await pilot.press("q", "d")
        await pilot.pause(0.1)
    assert run.sent == [] and app.detached and app.return_code == 0


# ---- 13: FINISHED is not the orange of PAUSED and STOPPED; dimmed keys read as off ------------------


async def test_finished_has_its_own_colour_and_dimmed_keys_are_struck_through():
    app = TrainmonApp(ScriptedRun(digits_mid_run(status=msg.PAUSED, checkpoints=False)))
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        status = app.query_one(StatusPane)
        colours = {}
        for state in (msg.PAUSED, msg.STOPPED, msg.FINISHED, msg.RUNNING):
            status.show(app.snapshot, state)
            await pilot.pause()
            colours[state] = status.styles.color
        assert colours[msg.FINISHED] != colours[msg.PAUSED] == colours[msg.STOPPED]
        assert colours[msg.FINISHED] != colours[msg.RUNNING]
        keys = footer_keys(app)
        off, on = keys["Save"], keys["Help"]  # this run keeps no checkpoints: Save is off
        assert off.has_class("-disabled") and not on.has_class("-disabled")
        assert off.rich_style.strike and not on.rich_style.strike  # a text style: distinct under NO_COLOR too


# ---- 14: the end of a run: a summary and how to close; devices marked as the last reading ------------


def test_summary_rows_give_final_and_best_validation_time_checkpoint_and_resume():
    summary = RunSummary()
    for event in (epoch_end(1, 0.6), epoch_end(2, 0.35), epoch_end(3, 0.41)):
        summary.take(event)
    rows = dict(summary.lines(finished(stopped=True), digits_mid_run(epochs=5, active_seconds=60.0), SAVED, "r1"))
    assert rows["stopped"].startswith("digits · 3 of 5 epochs · 135 iterations")
    assert rows["val loss"] == "final 0.4100 (epoch 3) · best 0.3500 at epoch 2"
    assert rows["time taken"].startswith("1:15 (training 1:00")
    assert rows["checkpoint"] == "end of epoch 3:\n/runs/r1/checkpoints/ckpt-000003.pt"
    assert "trainmon resume r1" in rows["go on"]


async def test_a_run_that_finishes_shows_its_summary_and_q_closes():
    run = ScriptedRun(digits_mid_run(checkpoints=True))
    app = TrainmonApp(run, run_id="r1")
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        assert "CPU 99" in devices_text(app)
        end = digits_mid_run(status=msg.FINISHED, checkpoints=True, epoch=3, epochs=3, last_checkpoint=SAVED)
        run.later(end, [epoch_end(1, 0.6), epoch_end(2, 0.35), epoch_end(3, 0.41), SAVED, finished()])
        run.alive = False
        app.poll_engine()
        await pilot.pause(0.1)
        assert isinstance(app.screen, SummaryScreen)
        rows = dict(app.screen.rows)
        assert "best 0.3500 at epoch 2" in rows["val loss"] and "trainmon resume r1 --epochs N" in rows["train on"]
        for _ in range(40):  # the summary's footer is composed a frame or two after the screen (a loaded box: more)
            if "Quit trainmon" in footer_keys(app):
                break
            await pilot.pause(0.05)
        assert "Quit trainmon" in footer_keys(app)
        await pilot.press("escape")
        await pilot.pause(0.1)
        devices = devices_text(app)
        assert "CPU" not in devices and "util" not in devices and "█" not in devices
        assert "run ended" in devices and "last reading" in app.query_one("#devices").border_title
        await pilot.press("q")
        await pilot.pause(0.1)
    assert app.return_code == 0 and run.sent == []


# ---- 15: an ended run shows its final state, not old notifications ---------------------------------


async def test_attaching_to_an_ended_run_replays_no_toasts():
    end = digits_mid_run(status=msg.STOPPED, checkpoints=True)
    history = [msg.BatchSizeChanged(old=32, new=2000, epoch=2, global_iteration=45),
               msg.AccumChanged(old=1, new=4, epoch=2, global_iteration=50),
               msg.Warned("the loss jumped", 2, 60),
               msg.CommandRejected(msg.SetAccum(0), "accumulation steps must be ≥ 1"),
               epoch_end(1, 0.6), finished(stopped=True, epochs=1)]
    run = ScriptedRun(end, events=history, alive=False)
    run.read_only = True
    app = TrainmonApp(run, run_id="r1")
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        await pilot.pause(0.2)
        assert toasts(app) == []
        assert any(label == "b 32→2000" for _, label in app.query_one("#loss").markers)  # the chart keeps the history
        assert isinstance(app.screen, SummaryScreen)
        await pilot.press("escape")
        assert "CPU 99" not in devices_text(app)


# ---- 17: s when nothing is new to save says so ------------------------------------------------------


async def test_a_refused_save_says_already_saved_as_news_not_an_error():
    run = ScriptedRun(digits_mid_run(checkpoints=True))
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        await pilot.press("s")
        run.later(events=[msg.CommandRejected(msg.SaveCheckpoint(), "already saved at the end of epoch 1")])
        app.poll_engine()
        await pilot.pause(0.05)
    assert toasts(app) == [("nothing new to save: already saved at the end of epoch 1", "information")]


def test_save_at_an_epoch_boundary_is_answered_already_saved(tmp_path):
    from test_resume_exact import train

    script = {(2, 0): [msg.SaveCheckpoint()], (2, 5): [msg.SaveCheckpoint()]}
    _, result, events, _ = train(tmp_path, script, epochs=2)
    rejected = [e.reason for e in events if isinstance(e, msg.CommandRejected)]
    assert rejected == ["already saved at the end of epoch 1"]
    saved = [(e.reason, e.epoch, e.iteration_in_epoch) for e in events if isinstance(e, msg.CheckpointSaved)]
    assert saved == [("epoch end", 1, 45), ("request", 2, 5), ("epoch end", 2, 45)]


def test_attach_without_a_live_run_points_to_ls_and_attach_id(trainmon_home):
    from test_runs import fake_run, invoke

    fake_run(trainmon_home, "20260101-000000-digits-aaaa", "stopped")
    code, out, err = invoke("attach")
    assert (code, out) == (2, "")
    assert err == ["trainmon: error: no live run to attach to: `trainmon ls` lists your runs, "
                   "`trainmon attach ID` opens an ended one read-only"]


async def test_d_on_an_ended_run_only_closes_the_view():
    # issue 26 trial: `d` after FINISHED printed "detached from run …; it goes on … trainmon stop ID"
    run = ScriptedRun(digits_mid_run(status=msg.FINISHED))
    app = TrainmonApp(run)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        await pilot.press("escape")  # the summary, if it shows, goes back to the charts
        await pilot.press("d")
        await pilot.pause(0.1)
    assert not app.detached and app.return_code == 0 and run.sent == []


async def test_the_batch_size_dialog_keeps_its_epoch_current_while_open():
    # issue 26 trial: left open, the dialog said "from the start of epoch 48" while the run was in epoch 54
    run = ScriptedRun(digits_mid_run(epoch=2))
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        await pilot.press("b")
        await pilot.pause(0.1)
        assert "epoch 3" in str(app.screen.query_one("#dialog-prompt").render())
        run.later(digits_mid_run(epoch=4))
        app.poll_engine()
        await pilot.pause(0.1)
        assert "from the start of epoch 5" in str(app.screen.query_one("#dialog-prompt").render())


async def test_another_viewers_refused_command_is_not_toasted_here():
    # issue 26 item 16 trial: after a reconnect, every other viewer's refusals showed as `not applied: ...`
    run = ScriptedRun(digits_mid_run())
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        app.sent_ids.add("me-1")
        run.later(events=[msg.CommandRejected(msg.StepOnce(id="other-7"), "single-iteration step works only while paused")])
        app.poll_engine()
        await pilot.pause(0.1)
        assert toasts(app) == []
        run.later(events=[msg.CommandRejected(msg.StepOnce(id="me-1"), "single-iteration step works only while paused")])
        app.poll_engine()
        await pilot.pause(0.1)
        assert toasts(app) == [("not applied: single-iteration step works only while paused", "error")]


async def test_the_summary_at_80x24_shows_a_long_checkpoint_path_whole():
    # issue 26 trial: the summary cut the path (`…/check…`) and split `--epochs N (N` / `> 30)`
    long = msgspec.structs.replace(SAVED, path="/home/someone/.local/state/trainmon/runs/20261207-011133-digits-6b1e"
                                   "/checkpoints/ckpt-000003.pt")
    run = ScriptedRun(digits_mid_run(checkpoints=True))
    app = TrainmonApp(run, run_id="20261207-011133-digits-6b1e")
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        end = digits_mid_run(status=msg.FINISHED, checkpoints=True, epoch=3, epochs=3, last_checkpoint=long)
        run.later(end, [epoch_end(1, 0.6), long, finished()])
        run.alive = False
        app.poll_engine()
        await pilot.pause(0.2)
        assert isinstance(app.screen, SummaryScreen)
        widget = app.screen.query_one("#summary")
        lines = widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))
        text = "".join(segment.text for line in lines for segment in line)
        assert "…" not in text
        assert long.path in "".join(text.split())  # folded over rows, whole
