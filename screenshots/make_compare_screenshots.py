"""Export the README's "Compare runs" screenshots from the app itself, on your newest runs:

    python -m trainmon --headless --epochs 3 --lr 0.01 --batch-size 32
    python -m trainmon --headless --epochs 3 --lr 0.1 --batch-size 64
    python -m trainmon --headless --epochs 3 --lr 0.05 --batch-size 32 --accum 2
    python screenshots/make_compare_screenshots.py

Writes compare-view.svg (`trainmon compare --last 3`, 100×30), compare-80x24.svg (the same at 80×24) and
compare-runs.svg (`r` in the monitor: the runs screen with two runs marked) next to this file.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from trainmon.engine.control.replay import RecordedRun
from trainmon.engine.record.rundir import list_runs
from trainmon.tui.app import TrainmonApp
from trainmon.tui.compare_app import CompareApp

HERE = Path(__file__).resolve().parent


async def compare_view(size: tuple[int, int], name: str) -> None:
    app = CompareApp([run.path for run in list_runs()[-3:]])
    async with app.run_test(size=size) as pilot:
        await pilot.pause(1.0)
        app.save_screenshot(name, path=str(HERE))


async def runs_screen() -> None:
    run = list_runs()[-1]
    app = TrainmonApp(RecordedRun(run), run_id=run.id)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.5)
        await pilot.press("escape", "r")  # past the ended run's summary, to the runs screen
        await pilot.pause(1.0)
        await pilot.press("space", "down", "space")
        await pilot.pause(0.3)
        app.save_screenshot("compare-runs.svg", path=str(HERE))


async def main() -> None:
    await compare_view((100, 30), "compare-view.svg")
    await compare_view((80, 24), "compare-80x24.svg")
    await runs_screen()


if __name__ == "__main__":
    asyncio.run(main())
