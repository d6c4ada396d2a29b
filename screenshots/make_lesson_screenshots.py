"""Export the README's lesson screenshots from the app itself, stepping a real run of the default lesson.

    python screenshots/make_lesson_screenshots.py

Writes lesson.svg (the first optimizer step landing, 80×24) and lesson-predict.svg (the question before
the last batch, 100×30) next to this file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from trainmon.cli.lesson import load_lesson, start_lesson_run
from trainmon.tui.lesson.app import LessonApp

HERE = Path(__file__).resolve().parent


async def shoot(size: tuple[int, int], presses: int, name: str) -> None:
    given = load_lesson(None)
    process, _rundir, client = start_lesson_run(given)
    app = LessonApp(client, given.stops, given.title, given.settings)
    async with app.run_test(size=size) as pilot:
        for _ in range(presses):
            await pilot.press("n")
            for _ in range(100):  # until the run has done what the stop needs (the stop shows then)
                if not app.driver.running:
                    break
                await pilot.pause(0.1)
        await pilot.pause(0.8)
        (HERE / name).write_text(app.export_screenshot())
        await pilot.press("q")
    client.close()
    process.wait(30)


def main() -> None:
    os.environ.setdefault("TRAINMON_HOME", tempfile.mkdtemp(prefix="trainmon-shots-"))
    asyncio.run(shoot((80, 24), 5, "lesson.svg"))
    asyncio.run(shoot((100, 30), 8, "lesson-predict.svg"))


if __name__ == "__main__":
    main()
