"""Lesson screen snapshots at fixed sizes against a scripted run (pytest-textual-snapshot).

The run is scripted at global iteration 4 (the first optimizer step of the textbook lesson), so the
screens hold still; the stepping itself is tested on a real engine in test_lesson_tui.py. Regenerate
after an intended change with `pytest tests/test_lesson_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from fakes import ScriptedRun
from textual.widgets import Input

from trainmon.engine.core import messages as msg
from trainmon.engine.core.lesson import LessonSettings, lesson_stops
from trainmon.tui.lesson.app import LessonApp

SETTINGS = LessonSettings(1000, 64, 4)
TITLE = "trainmon lesson: seed-example, 1000 samples, batch size 64, accumulation 4, 1 epoch"


def at_first_step() -> msg.Snapshot:
    return msg.Snapshot(status=msg.PAUSED, job="seed-example", epoch=1, epochs=1, iteration_in_epoch=4,
                        iterations_in_epoch=16, last_batch_size=40, batch_size=64, accum=4, dataset_size=1000,
                        global_iteration=4, total_iterations=16, global_step=1, total_steps=4, steps_in_epoch=1,
                        steps_per_epoch=4, samples_seen=256, total_samples=1000, window_position=0, window_size=4,
                        effective_batch_size=256, loss=2.3049)


def lesson_app() -> LessonApp:
    return LessonApp(ScriptedRun(at_first_step()), lesson_stops(SETTINGS), TITLE, SETTINGS)


async def to_first_step(pilot) -> None:
    pilot.app.animation_level = "none"
    await pilot.pause()
    for _ in range(5):  # reveal the plan, iteration 1, the window filling, ask, reveal the step
        await pilot.press("n")
    await pilot.pause(0.3)


def test_first_optimizer_step_at_80x24(snap_compare):
    assert snap_compare(lesson_app(), terminal_size=(80, 24), run_before=to_first_step)


def test_first_optimizer_step_at_160x45(snap_compare):
    assert snap_compare(lesson_app(), terminal_size=(160, 45), run_before=to_first_step)


def test_predict_at_100x30(snap_compare):
    async def first_question(pilot) -> None:
        pilot.app.animation_level = "none"
        await pilot.pause(0.3)

    assert snap_compare(lesson_app(), terminal_size=(100, 30), run_before=first_question)


def test_what_if_at_80x24(snap_compare):
    async def what_if(pilot) -> None:
        await to_first_step(pilot)
        await pilot.press("w")
        await pilot.pause()
        for field in pilot.app.screen.query(Input):  # a blink under load drew the focused field's cursor off
            field.cursor_blink = False
        pilot.app.screen.query_one("#whatif-batch_size").value = "100"
        pilot.app.screen.query_one("#whatif-accum").value = "3"
        await pilot.pause(0.3)

    assert snap_compare(lesson_app(), terminal_size=(80, 24), run_before=what_if)
