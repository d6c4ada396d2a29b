"""The lesson screen: the driver's stepping (no screen), then Pilot on a real engine through its socket."""

import asyncio

import pytest
from engines import TRAINMON, ls_json, wait_until
from tmux import needs_tmux

from trainmon.engine.core import messages as msg
from trainmon.engine.core.lesson import LessonSettings, lesson_stops
from trainmon.tui.lesson.driver import LessonDriver

TEXTBOOK = lesson_stops(LessonSettings(1000, 64, 4))


def _epoch_ended(epoch: int = 1) -> msg.EpochEnded:
    return msg.EpochEnded(epoch=epoch, epochs=1, iterations=16, iterations_planned=16, steps=4, samples_seen=1000,
                          train_loss=2.3, val_loss=None, val_metrics={}, batch_size=64, accum=4, lr=0.01,
                          elapsed=1.0, global_iteration=16, global_step=4)


def test_driver_asks_before_it_runs_and_never_runs_twice():
    sent = []
    d = LessonDriver(TEXTBOOK, sent.append)
    assert (d.view, d.asking, len(sent)) == (0, True, 0)  # first: predict the iterations
    moves = []
    while len(moves) < 40:
        result = d.advance()
        if result == "end":
            break
        moves.append((result, d.stop.name, d.asking, len(sent)))
        if d.running:  # the run does what was asked; the stop shows once it reported so
            assert d.advance() == "busy" and len(sent) == d.granted  # a press meanwhile is ignored
            d.observe(msg.Snapshot(global_iteration=d.granted), [_epoch_ended()] if d.granted == 16 else [])
            assert not d.running
            moves.append(("reached", d.stop.name, d.asking, len(sent)))
    assert moves == [
        ("reveal", "plan", False, 0), ("move", "plan", False, 1), ("reached", "first_iteration", False, 1),
        ("move", "first_iteration", False, 3), ("reached", "window_filling", False, 3),
        ("ask", "optimizer_step", True, 3), ("reveal", "optimizer_step", True, 4),
        ("reached", "optimizer_step", False, 4), ("move", "optimizer_step", False, 8), ("reached", "window", False, 8),
        ("move", "window", False, 12), ("reached", "window", False, 12), ("ask", "last_batch", True, 12),
        ("reveal", "last_batch", True, 16), ("reached", "last_batch", False, 16), ("ask", "epoch_end", True, 16),
        ("reveal", "epoch_end", False, 16), ("move", "validation", False, 16), ("move", "run_end", False, 16),
    ]
    assert all(isinstance(c, msg.StepOnce) for c in sent)
    # back shows earlier explanations only; forward again replays them without a question or a step
    assert d.back() and d.back() and d.stop.name == "epoch_end" and d.replaying
    assert (d.advance(), d.advance(), d.stop.name, d.advance(), len(sent)) == ("move", "move", "run_end", "end", 16)


def test_driver_waits_for_the_run():
    d = LessonDriver(lesson_stops(LessonSettings(1000, 64, 4), questions=False), lambda c: None)
    d.advance()
    assert d.stop.name == "plan" and d.running and not d.reached(d.stops[1])  # shown once the run got there
    d.observe(msg.Snapshot(global_iteration=1), [])
    assert d.stop.name == "first_iteration" and not d.running
    for _ in range(5):
        d.advance()
        d.observe(msg.Snapshot(global_iteration=d.granted), [])
    assert d.stop.name == "last_batch" and d.granted == 16
    assert d.advance() == "move" and d.running and d.stop.name == "last_batch"
    d.observe(msg.Snapshot(global_iteration=16), [])
    assert d.running  # the epoch's end has not been reported yet
    d.observe(None, [_epoch_ended()])
    assert d.stop.name == "epoch_end" and d.reached() and not d.running


async def _until(pilot, probe, timeout=30.0):
    for _ in range(int(timeout / 0.1)):
        if probe():
            return
        await pilot.pause(0.1)
    raise AssertionError("timed out")


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_stepping_through_an_epoch_on_a_real_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from trainmon.cli.lesson import load_lesson, start_lesson_run
    from trainmon.tui.lesson.app import LessonApp
    from trainmon.tui.lesson.widgets import StopPanel, TermStrip

    given = load_lesson(None)
    process, _rundir, client = start_lesson_run(given)
    app = LessonApp(client, given.stops, given.title, given.settings)
    seen = []
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            d = app.driver
            panel, strip = app.query_one(StopPanel), app.query_one(TermStrip)
            await _until(pilot, lambda: d.snapshot is not None and d.snapshot.status == msg.PAUSED)
            assert d.snapshot.global_iteration == 0  # started paused: nothing ran before the teacher's n
            assert panel.border_title == "Predict"
            while not d.at_end:
                await pilot.press("n")
                await _until(pilot, lambda: not d.running)  # a stop shows once the run reached it
                if d.asking:
                    assert panel.border_title == "Predict"
                    continue
                await pilot.pause(0.3)
                s, stop = d.snapshot, d.stop
                if not d.ended:  # a finished run's last snapshot holds the run's final counters
                    assert (s.global_iteration, s.global_step, s.samples_seen) == (
                        stop.global_iteration, stop.global_step, stop.samples_seen), stop.name
                assert panel.border_title == stop.title
                lit = [term for term in stop.terms if f" {term} " in str(strip.render())]
                seen.append((stop.name, s.global_iteration, s.global_step, s.samples_seen, len(lit) == len(stop.terms)))
            await pilot.press("b")
            assert d.stop.name == "validation" and "training does not rewind" in panel.plain
            await pilot.press("q")
        assert app.return_code == 0
        assert seen == [
            ("plan", 0, 0, 0, True), ("first_iteration", 1, 0, 64, True), ("window_filling", 3, 0, 192, True),
            ("optimizer_step", 4, 1, 256, True), ("window", 8, 2, 512, True), ("window", 12, 3, 768, True),
            ("last_batch", 16, 4, 1000, True), ("epoch_end", 16, 4, 1000, True), ("validation", 16, 4, 1000, True),
            ("run_end", 16, 4, 1000, True),
        ]
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        client.close()
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
@needs_tmux
@pytest.mark.timeout(180)
def test_trainmon_lesson_in_a_terminal_steps_then_q_stops_the_run(tmux, tmp_path):
    class_file = tmp_path / "class.toml"
    class_file.write_text('batch_size = 100\naccum = 3\nquestions = false\n')
    t = tmux(f"NO_COLOR=1 {TRAINMON} lesson {class_file}", 80, 24)
    t.wait_for("The plan of an epoch", timeout=90)
    screen = t.wait_for("[paused]", timeout=60)
    assert "iteration 0/10" in screen  # nothing ran before the teacher's first n
    t.keys("n")
    screen = t.wait_for("iteration 1/10", timeout=30)
    assert "Iteration 1: the first micro-batch" in screen
    t.keys("n")  # the window fills (2)
    t.wait_for("Iteration 2: the window fills", timeout=30)
    t.keys("n")  # the optimizer step lands (3)
    screen = t.wait_for("optimizer step 1/4", timeout=30)
    assert "Iteration 3: the optimizer step lands" in screen and "100 × 3 = 300" in screen
    t.keys("q")
    assert t.exit_code() == 0
    [run] = wait_until(lambda: [r for r in ls_json() if r["status"] == "stopped"], timeout=30,
                       what="the lesson's run to be stopped")
    assert (run["job"], run["global_iteration"]) == ("seed-example", 3)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_play_on_by_itself_waits_for_the_run_and_stops_at_the_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "class.toml").write_text('batch_size = 100\naccum = 3\nquestions = false\n')
    from trainmon.cli.lesson import load_lesson, start_lesson_run
    from trainmon.tui.lesson.app import PACES, LessonApp
    from trainmon.tui.lesson.widgets import LiveLine

    given = load_lesson("class.toml")
    process, _rundir, client = start_lesson_run(given)
    app = LessonApp(client, given.stops, given.title, given.settings)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            d = app.driver
            await _until(pilot, lambda: d.snapshot is not None and d.snapshot.status == msg.PAUSED)
            await pilot.press("minus")
            assert app.pace == PACES[PACES.index(3.0) + 1]
            for _ in range(len(PACES)):
                await pilot.press("plus")
            assert app.pace == PACES[0]
            await pilot.press("a")
            assert "playing, 0.5 s a stop" in str(app.query_one(LiveLine).render())
            views = []
            for _ in range(300):
                views.append((d.view, d.reached()))
                if d.at_end and not app.playing:
                    break
                await pilot.pause(0.1)
            assert d.at_end and not app.playing  # played to the last stop, then held
            shown = [v for v, _ in views]
            assert shown == sorted(shown) and set(shown) == set(range(len(d.stops)))
            assert d.granted == 10 and d.snapshot.global_iteration == 10
            await pilot.press("q")
        assert app.return_code == 0
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        client.close()
        if process.poll() is None:
            process.kill()


async def test_what_if_screen_works_the_plan_out_again():
    from textual.app import App

    from trainmon.engine.core.lesson_whatif import WhatIf
    from trainmon.tui.lesson.what_if import WhatIfScreen

    screen = WhatIfScreen(WhatIf(1000, 64, 4))

    class Host(App):
        CSS_PATH = "../tui/lesson/lesson.tcss"

        def on_mount(self) -> None:
            self.push_screen(screen)

    async with Host().run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "iterations per epoch: 16 → 16" in screen.plain
        field = screen.query_one("#whatif-batch_size")
        field.value = "100"
        screen.query_one("#whatif-accum").value = "3"
        await pilot.pause()
        assert screen.plain.splitlines()[:4] == ["iterations per epoch: 16 → 10", "last batch: 40 samples → 100 samples",
                                                 "windows: 4 + 4 + 4 + 4 → 3 + 3 + 3 + 1", "optimizer steps: 4 → 4"]
        assert "a run takes new accumulation steps at the next window start" in screen.plain
        screen.query_one("#whatif-world_size").value = "3"
        await pilot.pause()
        assert screen.plain.startswith("samples per rank: — → 334 (2 padded)")
        screen.query_one("#whatif-samples").value = "0"
        await pilot.pause()
        assert screen.plain == "m must be a whole number >= 1, got '0'"
        screen.query_one("#whatif-samples").value = ""
        screen.query_one("#whatif-samples").focus()
        await pilot.press(*"12345678901")  # typed: refused on screen, never cut to 10 digits silently
        await pilot.pause()
        assert screen.query_one("#whatif-samples").value == "12345678901"
        assert screen.plain == "m has more than 10 digits: 12345678901"
        box = screen.query_one("#whatif-drop_last")
        assert str(box.label) == "drop_last off"  # a word, readable without colour
        box.value = True
        await pilot.pause()
        assert str(box.label) == "drop_last on"
        await pilot.press("escape")
        assert not isinstance(pilot.app.screen, WhatIfScreen)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_validation_stop_shows_the_digits_runs_validation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "class.toml").write_text('job = "digits"\nbatch_size = 512\naccum = 2\nquestions = false\n')
    from trainmon.cli.lesson import load_lesson, start_lesson_run
    from trainmon.engine.core.format import SCREEN, metric
    from trainmon.tui.lesson.app import LessonApp
    from trainmon.tui.lesson.widgets import StopPanel

    given = load_lesson("class.toml")
    process, _rundir, client = start_lesson_run(given)
    app = LessonApp(client, given.stops, given.title, given.settings)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            d = app.driver
            while d.stop.name != "validation":
                await pilot.press("n")
                await _until(pilot, lambda: not d.running)
            ended = d.epochs[1]
            assert ended.val_loss is not None
            shown = app.query_one(StopPanel).plain
            assert f"validation loss  {metric(ended.val_loss, SCREEN)}" in shown and "no validation set" not in shown
            await pilot.press("q")
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        client.close()
        if process.poll() is None:
            process.kill()
