"""Layout snapshots at fixed sizes against a scripted engine (pytest-textual-snapshot).

Regenerate after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the report before committing.
"""

from __future__ import annotations

from fakes import ScriptedRun, digits_mid_run

from trainmon.engine.core import messages as msg
from trainmon.tui.app import TrainmonApp


async def load(pilot) -> None:
    app = pilot.app
    app.animation_level = "none"  # indeterminate bars then stand still
    await pilot.pause()
    app.poll_engine()
    await pilot.pause()  # the layout the snapshot brings (a status line of two rows) settles first
    app.draw_chart()
    await pilot.pause(0.1)


def val_events() -> list:
    return [msg.EpochEnded(epoch=1, epochs=5, iterations=45, iterations_planned=45, steps=12, samples_seen=1437,
                           train_loss=0.9, val_loss=0.612, val_metrics={"acc": 0.8611}, batch_size=32, accum=4,
                           lr=0.05, elapsed=6.0, global_iteration=45, global_step=12)]


def test_main_screen_mid_run(snap_compare):
    app = TrainmonApp(ScriptedRun(digits_mid_run(), events=val_events()))
    assert snap_compare(app, terminal_size=(100, 30), run_before=load)


def test_main_screen_at_80x24(snap_compare):
    app = TrainmonApp(ScriptedRun(digits_mid_run(), events=val_events()))
    assert snap_compare(app, terminal_size=(80, 24), run_before=load)


def test_paused_with_pending_change(snap_compare):
    pending = (msg.PendingChange("batch size", 32, 64, "start of epoch 3"),)
    snapshot = digits_mid_run(status=msg.PAUSED, pending=pending, iterations_per_second=None,
                              samples_per_second=None, eta_seconds=None)
    app = TrainmonApp(ScriptedRun(snapshot, events=val_events()))
    assert snap_compare(app, terminal_size=(100, 30), run_before=load)


def test_teaching_screen(snap_compare):
    app = TrainmonApp(ScriptedRun(digits_mid_run(), events=val_events()))

    async def open_help(pilot):
        await load(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(100, 30), run_before=open_help)


def test_no_gpu_unknown_length(snap_compare):
    from trainmon.engine.core.device_samples import DeviceSample, HostSample

    devices = DeviceSample(time=1.0, gpus=(), host=HostSample(process_rss_mib=402.0, process_cpu_percent=97.0,
                           ram_used_mib=1271.0, ram_total_mib=24105.0, cpu_count=2), nvml_available=False,
                           nvml_reason="no NVIDIA GPU (NVML unavailable): NVML Shared Library Not Found")
    snapshot = digits_mid_run(device="cpu", dataset_size=None, iterations_in_epoch=None, last_batch_size=None,
                              total_iterations=None, total_steps=None, total_samples=None, steps_per_epoch=None,
                              eta_seconds=None, accum=1, window_size=1, window_position=0, window_samples=0,
                              devices=devices)
    app = TrainmonApp(ScriptedRun(snapshot))
    assert snap_compare(app, terminal_size=(100, 30), run_before=load)


def test_two_ranks(snap_compare):
    """A distributed run on 2 ranks: the Ranks pane in the Devices pane's place, b × k × 2 ranks, the mean loss."""
    from test_ranks_pane import distributed, first_epoch, two_even

    app = TrainmonApp(ScriptedRun(distributed(two_even()), events=first_epoch()))
    assert snap_compare(app, terminal_size=(100, 30), run_before=load)


def test_main_screen_at_160x45(snap_compare):
    """Issue 26 item 10: a wide, tall terminal gives the left column more room and the sparkline the rows left."""
    app = TrainmonApp(ScriptedRun(digits_mid_run(), events=val_events()))
    assert snap_compare(app, terminal_size=(160, 45), run_before=load)


def test_main_screen_no_color_with_two_pending_changes(snap_compare, monkeypatch):
    """Issue 26 items 7, 8: with NO_COLOR at 80×24, two pending changes and no GPU, every figure stays whole."""
    from test_tui_fit import two_pending_no_gpu

    monkeypatch.setenv("NO_COLOR", "1")
    app = TrainmonApp(ScriptedRun(two_pending_no_gpu(), events=val_events()))
    assert snap_compare(app, terminal_size=(80, 24), run_before=load)
