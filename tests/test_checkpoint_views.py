"""What viewers show of checkpoints: key=value lines, the `s` key, the status line, resume markers, toasts."""

from __future__ import annotations

import pytest
from fakes import ScriptedRun, digits_mid_run

from trainmon.engine.core import messages as msg
from trainmon.engine.core.format import SCREEN, figures, mebibytes
from trainmon.engine.core.report import event_line
from trainmon.tui.app import TrainmonApp
from trainmon.tui.widgets.loss_pane import LossPane
from trainmon.tui.widgets.status_pane import StatusPane

PATH = "/runs/20261130-000409-digits-0357/checkpoints/ckpt-000045.pt"


def saved(global_iteration: int = 45, reason: str = "epoch end", epoch: int = 1, iteration_in_epoch: int = 45,
          epoch_complete: bool = True, path: str = PATH) -> msg.CheckpointSaved:
    return msg.CheckpointSaved(path=path, size=123_456, seconds=0.0123456, reason=reason, epoch=epoch,
                               iteration_in_epoch=iteration_in_epoch, global_iteration=global_iteration,
                               epoch_complete=epoch_complete)


def resumed(**changes) -> msg.RunResumed:
    base = dict(path=PATH, epoch=1, iteration_in_epoch=45, global_iteration=45, lost_iterations=7)
    base.update(changes)
    return msg.RunResumed(**base)


# ------------------------------------------------------------------------------ numbers and lines
@pytest.mark.parametrize("value, text", [
    (0.0123456, "0.0123"), (2.345, "2.35"), (45.67, "45.7"), (99.96, "100"), (0.9996, "1.00"), (1234.5, "1234"),
    (0.0, "0"), (-3.5, "-3.50"), (None, "n/a"), (float("nan"), "nan"),
])
def test_figures_keeps_three_significant_figures(value, text):
    assert figures(value) == text


def test_mebibytes_on_a_line_and_on_screen():
    assert mebibytes(123_456) == "0.118"
    assert mebibytes(46_800_000) == "44.6"
    assert mebibytes(1_300_000_000) == "1240"
    assert mebibytes(1_300_000_000, SCREEN, unit=True) == "1,240 MiB"
    assert mebibytes(None, SCREEN, unit=True) == "--"


def test_checkpoint_saved_line():
    assert event_line(saved()) == (
        'checkpoint_saved reason="epoch end" epoch=1 iteration_in_epoch=45 epoch_complete=true global_iteration=45'
        f' size_mib=0.118 seconds=0.0123 path="{PATH}"')
    mid = saved(global_iteration=60, reason="request", epoch=2, iteration_in_epoch=15, epoch_complete=False,
                path="/a b/c.pt")
    assert event_line(mid) == (
        'checkpoint_saved reason="request" epoch=2 iteration_in_epoch=15 epoch_complete=false global_iteration=60'
        ' size_mib=0.118 seconds=0.0123 path="/a b/c.pt"')


def test_checkpoint_failed_line():
    failed = msg.CheckpointFailed(message='No space left on device: "/runs/x"', reason="timer", global_iteration=140)
    assert event_line(failed) == (
        'checkpoint_failed reason="timer" global_iteration=140 message="No space left on device: \\"/runs/x\\""')


def test_resumed_from_checkpoint_line_and_the_unpause_line_differ():
    assert event_line(resumed()) == (
        f'resumed_from_checkpoint epoch=1 iteration_in_epoch=45 global_iteration=45 lost_iterations=7 path="{PATH}"')
    full = resumed(lost_iterations=0, skipped=("ckpt-000060.pt: truncated file",),
                   changes=("batch size 32 → 64 at start of epoch 2", "accumulation steps 4 → 2"))
    assert event_line(full) == (
        f'resumed_from_checkpoint epoch=1 iteration_in_epoch=45 global_iteration=45 lost_iterations=0 path="{PATH}"'
        ' skipped=["ckpt-000060.pt: truncated file"]'
        ' changes=["batch size 32 → 64 at start of epoch 2", "accumulation steps 4 → 2"]')
    assert event_line(msg.Resumed(global_iteration=45)).split()[0] == "resumed"


def test_headless_prints_checkpoint_lines():
    import io

    from trainmon.cli.headless import HeadlessPrinter

    out = io.StringIO()
    printer = HeadlessPrinter(out=out, clock=lambda: 0.0)
    for event in (resumed(), saved(), msg.CheckpointFailed(message="disk full", reason="stop", global_iteration=50)):
        printer(event)
    assert [line.split()[0] for line in out.getvalue().splitlines()] == [
        "resumed_from_checkpoint", "checkpoint_saved", "checkpoint_failed"]


# ------------------------------------------------------------------------------ the app
async def start(pilot) -> None:
    app = pilot.app
    app.animation_level = "none"
    await pilot.pause()
    app.poll_engine()  # the first update: what a late viewer gets replayed
    await pilot.pause(0.05)


def status_text(app) -> str:
    return str(app.query_one(StatusPane).render())


def toasts(app) -> list[tuple[str, str]]:
    return [(n.message, n.severity) for n in app._notifications]


async def test_s_sends_save_checkpoint():
    run = ScriptedRun(digits_mid_run(checkpoints=True))
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        assert app.check_action("save_checkpoint", ()) is True
        await pilot.press("s")
        await pilot.pause(0.1)
    assert run.sent == [msg.SaveCheckpoint()]


@pytest.mark.parametrize("snapshot, read_only", [
    (digits_mid_run(checkpoints=False), False),  # the run keeps no checkpoints
    (digits_mid_run(checkpoints=True), True),  # attached read-only to an ended run
    (digits_mid_run(checkpoints=True, status=msg.FINISHED), False),
    (digits_mid_run(checkpoints=True, status=msg.STARTING), False),
], ids=["checkpoints off", "read-only", "finished", "starting"])
async def test_s_is_dimmed_and_sends_nothing_when_no_save_is_possible(snapshot, read_only):
    run = ScriptedRun(snapshot)
    run.read_only = read_only
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        assert app.check_action("save_checkpoint", ()) is None
        await pilot.press("s")
        await pilot.pause(0.1)
    assert run.sent == []


async def test_status_line_follows_checkpoints():
    run = ScriptedRun(digits_mid_run(checkpoints=True))
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        assert "no checkpoint yet" in status_text(app)
        run.later(events=[saved()])  # at global iteration 45; the snapshot stands at 67
        app.poll_engine()
        assert "saved end of ep 1 · 22 it ago" in status_text(app)
        mid = saved(global_iteration=60, reason="request", epoch=2, iteration_in_epoch=15, epoch_complete=False)
        run.later(digits_mid_run(checkpoints=True, global_iteration=70), events=[mid])
        app.poll_engine()
        assert "saved ep 2 it 15 · 10 it ago" in status_text(app)
        run.later(events=[msg.CheckpointFailed(message="[Errno 28] No space left on device", reason="timer",
                                               global_iteration=69)])
        app.poll_engine()
        assert "checkpoint failed at it 69" in status_text(app) and "saved" not in status_text(app)
    assert toasts(app) == [
        (f"checkpoint saved (request) · 0.118 MiB in 0.0123 s\n{PATH}", "information"),
        ("checkpoint not saved (timer): [Errno 28] No space left on device", "error"),
    ]  # the save at an epoch end toasts nowhere: a small job ends several epochs a second


async def test_status_line_takes_the_snapshot_checkpoint_and_nothing_when_checkpoints_are_off():
    app = TrainmonApp(ScriptedRun(digits_mid_run(checkpoints=True, last_checkpoint=saved())))
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        assert "saved end of ep 1 · 22 it ago" in status_text(app)
    app = TrainmonApp(ScriptedRun(digits_mid_run()))
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        assert "checkpoint" not in status_text(app) and "saved" not in status_text(app)


async def test_repeated_failure_toasts_once_and_replayed_saves_toast_nothing():
    failure = msg.CheckpointFailed(message="disk full", reason="timer", global_iteration=50)
    run = ScriptedRun(digits_mid_run(checkpoints=True), events=[saved(reason="request"), failure])
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        assert toasts(app) == []  # replayed to a viewer that attached late
        run.later(events=[msg.CheckpointFailed(message="disk full", reason="timer", global_iteration=60)])
        app.poll_engine()
        await pilot.pause(0.05)
        assert toasts(app) == []  # the status line says it already
        assert "checkpoint failed at it 60" in status_text(app)


async def test_run_resumed_adds_a_chart_marker_live_and_on_attach():
    run = ScriptedRun(digits_mid_run(checkpoints=True), events=[saved(), resumed()])
    app = TrainmonApp(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        loss = app.query_one(LossPane)
        assert loss.resume_markers == [45]
        assert loss.markers == []  # batch-size and accumulation changes only
        assert "resumed" in str(loss.query_one("#loss-values").render())
        assert toasts(app) == []  # a replayed resume is history: the marker shows it, no toast on every attach
        run.later(events=[resumed(global_iteration=60, epoch=2, iteration_in_epoch=15, lost_iterations=1,
                                  skipped=("ckpt-000066.pt: truncated file",))])
        app.poll_engine()
        app.draw_chart()
        await pilot.pause(0.05)  # a toast arrives as a message
        assert loss.resume_markers == [45, 60]
        assert toasts(app)[-1] == (f"resumed from {PATH} at epoch 2, iteration 15 (global 60); 1 iteration run again"
                                   "\nskipped: ckpt-000066.pt: truncated file", "warning")


def test_help_lists_the_save_key():
    assert any(key == "s" and "checkpoint" in text for key, text in TrainmonApp.KEY_HELP)


async def load(pilot) -> None:
    await start(pilot)
    pilot.app.draw_chart()
    await pilot.pause(0.1)
    pilot.app.clear_notifications()  # the resume toast would cover the chart's legend
    await pilot.pause(0.1)


def test_main_screen_with_checkpoint_and_resume_marker(snap_compare):
    """100x30 with a run id: the status line holds the last checkpoint on one line; a green resume line."""
    later = saved(global_iteration=60, reason="timer", epoch=2, iteration_in_epoch=15, epoch_complete=False)
    run = ScriptedRun(digits_mid_run(checkpoints=True), events=[saved(), resumed(), later])
    app = TrainmonApp(run, run_id="20261130-000409-digits-0357")
    assert snap_compare(app, terminal_size=(100, 30), run_before=load)
