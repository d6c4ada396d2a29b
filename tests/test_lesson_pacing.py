"""The lesson keeps pace with its run: keys and autoplay never show a stop before the run reached it, autoplay
answers questions by running on, and a long stop scrolls at 80×24. Pilot over a fake run that steps one
iteration a poll once asked (slower than the keys), so every number on screen is the run's."""

from __future__ import annotations

from typing import Any, Optional

from textual.containers import VerticalScroll

from trainmon.engine.control.channel import Update
from trainmon.engine.core import messages as msg
from trainmon.engine.core.lesson import LessonSettings, lesson_stops
from trainmon.tui.lesson.app import LessonApp
from trainmon.tui.lesson.widgets import LiveLine, StopPanel

TEXTBOOK = LessonSettings(1000, 64, 4)
TITLE = "trainmon lesson: seed-example, 1000 samples, batch size 64, accumulation 4, 1 epoch"


def snapshot(i: int, status: str, n: int = 16, b: int = 64, m: int = 1000, k: int = 4) -> msg.Snapshot:
    """The textbook run after `i` iterations of its one epoch."""
    seen = min(i * b, m)
    return msg.Snapshot(status=status, job="seed-example", epoch=1, epochs=1, iteration_in_epoch=i,
                        iterations_in_epoch=n, last_batch_size=m - (n - 1) * b, batch_size=b, accum=k, dataset_size=m,
                        global_iteration=i, total_iterations=n, global_step=i // k + (i == n and n % k != 0),
                        total_steps=4, steps_in_epoch=i // k, steps_per_epoch=4, samples_seen=seen, total_samples=m,
                        window_position=i % k, window_size=k, effective_batch_size=b * k, loss=2.3)


class SteppingRun:
    """A run started paused that does one asked-for iteration a poll (none while `held`), ends its epoch after
    the last, and validates with `val_loss`."""

    def __init__(self, n: int = 16, val_loss: Optional[float] = None) -> None:
        self.n, self.asked, self.done, self.held, self.val_loss = n, 0, 0, False, val_loss
        self.sent: list[Any] = []
        self._first = True

    def send(self, command: Any) -> None:
        self.sent.append(command)
        if isinstance(command, msg.StepOnce):
            self.asked += 1

    def poll(self) -> Update:
        if self._first:
            self._first = False
            return Update(snapshot=snapshot(0, msg.PAUSED), events=[])
        if self.held or self.done >= self.asked:
            return Update(snapshot=None, events=[])
        self.done += 1
        events = []
        if self.done == self.n:
            events.append(msg.EpochEnded(epoch=1, epochs=1, iterations=16, iterations_planned=16, steps=4,
                                         samples_seen=1000, train_loss=2.3, val_loss=self.val_loss,
                                         val_metrics={"accuracy": 0.5} if self.val_loss else {}, batch_size=64,
                                         accum=4, lr=0.01, elapsed=1.0, global_iteration=16, global_step=4))
        # a snapshot published mid-step still says paused: the screen must not believe it
        return Update(snapshot=snapshot(self.done, msg.PAUSED), events=events)


def screen_text(app) -> str:
    """Every row the terminal shows now."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def _until(pilot, probe, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if probe():
            return
        await pilot.pause(0.05)
    raise AssertionError("timed out")


async def test_fast_keys_wait_for_the_run_and_its_numbers():
    run = SteppingRun()
    app = LessonApp(run, lesson_stops(TEXTBOOK), TITLE, TEXTBOOK, refresh_hz=20)
    async with app.run_test(size=(100, 30)) as pilot:
        app.animation_level = "none"
        d, panel, live = app.driver, app.query_one(StopPanel), app.query_one(LiveLine)
        await _until(pilot, lambda: d.snapshot is not None)
        # predict first: the counters that hold the answer (iteration 0/16) are hidden, nothing has to run
        assert "/16" not in str(live.render()) and "counters are hidden until the answer" in str(live.render())
        assert "n: reveal the answer." in panel.plain and "run on" not in panel.plain
        await pilot.press("n")
        assert panel.border_title == "The plan of an epoch"
        run.held = True
        for _ in range(16):
            await pilot.press("n")
        # one advance went to the run; the other 15 were refused while it stepped, and the screen says so
        assert (run.asked, d.view, d.running) == (1, 0, True)
        assert panel.border_title == "The plan of an epoch" and "running… the next stop shows" in panel.plain
        assert "[running…]" in str(live.render()) and "[paused]" not in str(live.render())
        run.held = False
        await _until(pilot, lambda: not d.running)
        assert (d.stop.name, panel.border_title) == ("first_iteration", "Iteration 1: the first micro-batch")
        assert "[paused]" in str(live.render()) and "iteration 1/16" in str(live.render())
        shown = []
        while not d.at_end:  # every stop in order, each shown only once the run's counters match it
            await pilot.press("n")
            await _until(pilot, lambda: not d.running)
            shown.append((d.stop.name, d.asking))
            if d.asking and d.stop.name == "optimizer_step":  # its answer needs the run to move
                assert "n: run on and reveal the answer." in panel.plain
            if not d.asking:
                s = d.snapshot
                assert (s.global_iteration, s.global_step, s.samples_seen) == (
                    d.stop.global_iteration, d.stop.global_step, d.stop.samples_seen), d.stop.name
        assert shown == [("window_filling", False), ("optimizer_step", True), ("optimizer_step", False),
                         ("window", False), ("window", False), ("last_batch", True), ("last_batch", False),
                         ("epoch_end", True), ("epoch_end", False), ("validation", False), ("run_end", False)]
        assert run.asked == 16


async def test_autoplay_answers_each_question_by_running_on_to_the_end():
    run = SteppingRun()
    app = LessonApp(run, lesson_stops(TEXTBOOK), TITLE, TEXTBOOK, refresh_hz=20)
    async with app.run_test(size=(80, 24)) as pilot:
        app.animation_level = "none"
        d, panel = app.driver, app.query_one(StopPanel)
        for _ in range(6):
            await pilot.press("plus")  # the fastest pace, 0.5 s a stop
        await pilot.press("a")
        seen = []
        for _ in range(400):
            seen.append((d.view, d.asking, panel.border_title))
            if d.at_end and not app.playing:
                break
            await pilot.pause(0.05)
        assert d.at_end and not app.playing and run.done == 16
        # the optimizer step's question (stop 4) and the last batch's (stop 7) each showed, then their answers
        assert (3, True, "Predict") in seen and (3, False, "Iteration 4: the optimizer step lands") in seen
        assert (6, True, "Predict") in seen and (6, False, "Iteration 16: the last batch is short") in seen
        assert [v for v, _, _ in seen] == sorted(v for v, _, _ in seen)


async def test_the_first_answer_can_be_read_at_80x24():
    app = LessonApp(SteppingRun(), lesson_stops(TEXTBOOK), TITLE, TEXTBOOK, refresh_hz=20)
    answer = "Answer: 16 = ceil(1000 / 64), not 1000 // 64 = 15"
    async with app.run_test(size=(80, 24)) as pilot:
        app.animation_level = "none"
        await pilot.press("n")
        await pilot.pause(0.2)
        assert app.query_one(StopPanel).border_title == "The plan of an epoch"
        for _ in range(3):
            if answer in screen_text(app):
                break
            await pilot.press("pagedown")
            await pilot.pause(0.1)
        assert answer in screen_text(app)
        assert app.query_one("#focus", VerticalScroll).scroll_y > 0  # it did not fit: PageDown brought it


async def _to_validation(run: SteppingRun) -> str:
    settings = LessonSettings(1000, 64, 4, validation=run.val_loss is not None)
    app = LessonApp(run, lesson_stops(settings, questions=False), TITLE, settings, refresh_hz=20)
    async with app.run_test(size=(100, 30)) as pilot:
        d = app.driver
        while d.stop.name != "validation":
            await pilot.press("n")
            await _until(pilot, lambda: not d.running)
        return app.query_one(StopPanel).plain


async def test_the_validation_stop_shows_the_runs_validation_figures():
    shown = await _to_validation(SteppingRun(val_loss=0.4321))
    assert "validation loss  0.4321" in shown and "validation accuracy  0.5000" in shown
    assert "no validation set" not in shown
    shown = await _to_validation(SteppingRun())
    assert "validation  no validation set" in shown and "validation loss" not in shown
