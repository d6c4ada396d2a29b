"""Issue 26 items 4–8 and 10 on screen: figures whole and beside their labels at 80×24, 100×30 and 160×45."""

from __future__ import annotations

import pytest
from fakes import ScriptedRun, digits_mid_run

from trainmon.engine.core import messages as msg
from trainmon.engine.core.device_samples import DeviceSample, HostSample
from trainmon.tui.app import TrainmonApp
from trainmon.tui.launch import wrapped
from trainmon.tui.teaching import glossary


def text(app, selector: str) -> str:
    return str(app.query_one(selector).render())


def epoch_ended(epoch: int, val: float | None, train: float) -> msg.EpochEnded:
    return msg.EpochEnded(epoch=epoch, epochs=5, iterations=45, iterations_planned=45, steps=12,
                          samples_seen=1437 * epoch, train_loss=train, val_loss=val, val_metrics={"acc": 0.9917},
                          batch_size=32, accum=4, lr=0.05, elapsed=6.0 * epoch, global_iteration=45 * epoch,
                          global_step=12 * epoch)


async def shown(snapshot, size=(80, 24), events=None, keys=()):
    app = TrainmonApp(ScriptedRun(snapshot, events=events))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        app.poll_engine()
        await pilot.pause(0.1)
        for key in keys:
            await pilot.press(key)
        await pilot.pause(0.1)
        yield app


async def on_screen(snapshot, size=(80, 24), events=None, keys=()):
    async for app in shown(snapshot, size, events, keys):
        return {name: text(app, f"#{name}") for name in
                ("status", "batch-label", "speed", "elapsed", "accum", "devices-text", "loss-values")}, app


async def test_speed_and_eta_say_estimating_until_the_rate_settles():  # item 4
    texts, _ = await on_screen(digits_mid_run(iterations_per_second=None, samples_per_second=None, eta_seconds=None))
    assert texts["speed"] == "speed estimating…" and "ETA estimating…" in texts["elapsed"]
    texts, _ = await on_screen(digits_mid_run(validation_seconds=65.0, checkpoint_seconds=3.0, elapsed=200.0,
                                              active_seconds=110.0))
    assert "ETA 0:22" in texts["elapsed"]  # the training left, and apart from it what was left out
    assert "paused 1:30" in texts["elapsed"] and "validation 1:05" in texts["elapsed"]
    assert "saving 0:03" in texts["elapsed"]


async def test_a_batch_larger_than_the_set_says_it_holds_the_whole_set():  # item 5
    s = digits_mid_run(batch_size=2000, accum=2, iterations_in_epoch=1, iteration_in_epoch=0, last_batch_size=1437,
                       effective_batch_size=4000, window_size=1, window_position=0, window_samples=0)
    texts, _ = await on_screen(s, size=(100, 30))
    assert "effective batch size 1437" in texts["accum"] and "the whole set" in texts["accum"]
    assert "= 4000" not in texts["accum"].split("(")[0]
    assert "batch size 2000 > 1437 samples" in texts["batch-label"]
    rows = dict(glossary(s))
    assert "whole training set, 1437 samples" in rows["effective batch size"]
    assert "one batch of all 1437" in rows["batch size"]


def test_an_ended_run_with_a_batch_larger_than_the_set_gives_the_real_effective_batch():  # item 5, at the end
    from trainmon.tui.widgets.accum_pane import final_text

    s = digits_mid_run(batch_size=5000, accum=3, iterations_in_epoch=1, iteration_in_epoch=1, last_batch_size=1437,
                       window_size=1, window_position=0, window_samples=0, status=msg.FINISHED)
    text = final_text(s, msg.FINISHED)
    assert "effective batch size 1437" in text and "= 15000" not in text.split("(")[0]


async def test_after_an_epochs_short_last_window_the_next_epochs_first_window_shows():
    s = digits_mid_run(accum=4, iteration_in_epoch=45, iterations_in_epoch=45, window_size=1, window_position=0,
                       window_samples=0)
    texts, _ = await on_screen(s, size=(100, 30))
    assert "0/4" in texts["accum"] and "next in 4 iterations" in texts["accum"] and "(short)" not in texts["accum"]


async def test_best_is_the_best_epoch_with_where_it_was():  # item 6
    events = [epoch_ended(1, 0.70, 0.9), epoch_ended(2, 0.60, 0.5), epoch_ended(3, 0.65, 0.4)]
    texts, _ = await on_screen(digits_mid_run(best_loss=2.272e-07), size=(100, 30), events=events)
    assert "best val 0.6000 (ep 2)" in texts["loss-values"]
    assert "2.272e-07" not in texts["loss-values"]
    no_val = [epoch_ended(1, None, 0.9), epoch_ended(2, None, 0.5)]
    texts, _ = await on_screen(digits_mid_run(val_loss=None, best_val_loss=None), size=(100, 30), events=no_val)
    assert "best epoch 0.5000 (ep 2)" in texts["loss-values"]


def two_pending_no_gpu() -> msg.Snapshot:
    pending = (msg.PendingChange("batch size", 32, 64, "start of epoch 3"),
               msg.PendingChange("accumulation steps", 4, 5, "next window (global iteration 68)"))
    devices = DeviceSample(time=1.0, gpus=(), host=HostSample(process_rss_mib=401.0, process_cpu_percent=104.0,
                           ram_used_mib=1271.0, ram_total_mib=24105.0, cpu_count=2), nvml_available=False,
                           nvml_reason="no NVIDIA GPU (NVML unavailable): NVML Shared Library Not Found")
    return digits_mid_run(status=msg.PAUSED, pending=pending, device="cpu", devices=devices)


@pytest.mark.parametrize("snapshot", [two_pending_no_gpu(), digits_mid_run()])
async def test_at_80x24_every_figure_is_whole_and_inside_its_pane(snapshot):  # item 7
    texts, app = await on_screen(snapshot)
    figures = app.query_one("#devices-text")
    assert app.query_one("#devices").content_region.contains_region(figures.region)
    assert "CPU 104%" in texts["devices-text"] or "CPU 99%" in texts["devices-text"]
    status = app.query_one("#status")
    assert len(texts["status"].splitlines()) <= status.content_region.height
    for p in snapshot.pending:
        assert p.describe() in texts["status"].replace("\n", " ")


async def test_below_80x24_a_notice_says_the_terminal_is_too_small():  # item 7
    async for app in shown(digits_mid_run(), size=(70, 20)):
        assert app.query_one("#too-small").display and not app.query_one("#main").display
        assert "terminal too small" in text(app, "#too-small") and "70×20" in text(app, "#too-small")
    async for app in shown(digits_mid_run(), size=(80, 24)):
        assert not app.query_one("#too-small").display


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (160, 45)])
async def test_labels_stay_beside_their_values(size):  # item 8
    saved = msg.CheckpointSaved("/runs/x/ckpt.pt", 10, 0.1, "epoch end", 34, 45, 40, True)
    s = digits_mid_run(checkpoints=True, last_checkpoint=saved, global_iteration=67)
    async for app in shown(s, size=size, events=val_events_with(saved)):
        app.run_id = "20261206-214527-seed-example"
        app._show(app.snapshot)
        await app.workers.wait_for_complete()
        lines = {name: text(app, f"#{name}").splitlines() for name in ("status", "accum", "loss-values", "speed")}
    joined = [line for group in lines.values() for line in group]
    for whole in ("saved end of ep 34 · 27 it ago", "next in 2 iterations", "val acc 0.8611", "window 0.4391",
                  "23,760.0 samples/s"):
        assert any(whole in line for line in joined), (whole, joined)


def val_events_with(saved) -> list:
    return [epoch_ended(1, 0.612, 0.9), saved]


def test_lines_after_the_tui_wrap_between_words_on_a_terminal(monkeypatch):  # item 8
    import os

    class Tty:
        def isatty(self):
            return True

        def fileno(self):
            return 2

    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((40, 24)))
    line = "trainmon: finished epochs=3 global_iteration=135 train_loss=0.2120 val_loss=0.1634 elapsed=4.1s"
    out = wrapped(line, Tty())
    assert all(len(row) <= 40 for row in out.splitlines())
    assert "val_loss=0.1634" in out.splitlines()[-2] + out.splitlines()[-1]
    assert out.replace("\n", " ") == line
    # issue 26 trial: the detach hint broke `trainmon attach` / `ID` over two rows
    hint = ("trainmon: detached from run 20261207-011133-digits-6b1e; it goes on. "
            "`trainmon attach 20261207-011133-digits-6b1e` to come back, `trainmon stop 20261207-011133-digits-6b1e`")
    out = wrapped(hint, Tty())
    assert "`trainmon attach 20261207-011133-digits-6b1e`" in out.splitlines()
    assert out.replace("\n", " ") == hint


async def test_text_starting_samples_epoch_time_plural_footer():  # item 10
    texts, _ = await on_screen(msg.Snapshot())
    assert "starting the engine…" in texts["status"]
    texts, _ = await on_screen(digits_mid_run(epoch_seconds=6.2), size=(100, 30))
    assert "1437 samples" in texts["batch-label"] and "m = " not in texts["batch-label"]
    assert "last epoch 6.2 s" in texts["elapsed"]  # that epoch's, not the ETA's mean (a new user's trial)
    for seconds, shown in ((0.27, "last epoch 0.27 s"), (75.0, "last epoch 1:15")):  # never `0:00`
        texts, _ = await on_screen(digits_mid_run(epoch_seconds=seconds), size=(100, 30))
        assert shown in texts["elapsed"]
    one = digits_mid_run(batch_size=2000, accum=1, iterations_in_epoch=1, last_batch_size=1437)
    assert "1 iteration," in dict(glossary(one))["epoch"]


async def test_footer_keys_read_in_order_and_pause_becomes_resume():  # item 10
    async for app in shown(digits_mid_run(), size=(100, 30)):
        shot = app.export_screenshot()
        assert "[]" in shot.replace("&#160;", " ") and "][" not in shot
        assert app.check_action("toggle_pause", ("pause",)) is True
        assert app.check_action("toggle_pause", ("resume",)) is False
        await app.run_action("toggle_pause('pause')")
        assert app.check_action("toggle_pause", ("resume",)) is True
        assert app.check_action("toggle_pause", ("pause",)) is False


async def test_a_wide_tall_terminal_gives_the_left_column_more_room():  # item 10
    async for app in shown(digits_mid_run(), size=(160, 45)):
        assert app.query_one("#left").size.width > 46
        devices = app.query_one("#devices")
        spark = app.query_one("#memory-spark")
        assert spark.size.height > 2  # the rows left over go to the memory sparkline, not to empty space
        assert devices.content_region.bottom - spark.region.bottom <= 1
