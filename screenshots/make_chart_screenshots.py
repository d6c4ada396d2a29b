"""Export the README's chart screenshots from the app itself, attached to a real detached digits run.

    python screenshots/make_chart_screenshots.py

Writes charts-steps.svg (the loss against optimizer steps, smoothing 0.95, epoch marks; 100×30),
charts-grad-norm.svg (the gradient norm of a clipped run against samples seen; 80×24) and charts-val.svg
(validation accuracy per epoch against active time; 80×24) next to this file.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from trainmon.engine.control.client import RunClient
from trainmon.engine.record.rundir import resolve_run
from trainmon.tui.app import TrainmonApp

HERE = Path(__file__).resolve().parent


async def wait(pilot, predicate, timeout: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and not predicate(pilot.app.snapshot):
        await pilot.pause(0.1)


async def shoot(run_id: str, size: tuple[int, int], keys: list[str], name: str) -> None:
    run = RunClient(resolve_run(run_id).socket_path).subscribe()
    app = TrainmonApp(run, run_id=run_id)
    async with app.run_test(size=size) as pilot:
        await wait(pilot, lambda s: s.epoch >= 7 and s.iteration_in_epoch >= 20)
        for key in keys:
            await pilot.press(key)
        app.draw_chart()
        await pilot.pause(1.2)
        app.save_screenshot(name, str(HERE))
        await pilot.press("d")
    run.close()


def main() -> None:
    trainmon = str(Path(sys.executable).with_name("trainmon"))
    run_id = subprocess.run([trainmon, "--detach", "--epochs", "300", "--accum", "4", "--batch-size", "16",
                             "--clip-grad-norm", "2"], capture_output=True, text=True, check=True).stdout.split()[-1]
    try:
        asyncio.run(shoot(run_id, (100, 30), ["x", "full_stop"], "charts-steps.svg"))
        asyncio.run(shoot(run_id, (80, 24), ["m", "m", "x", "x"], "charts-grad-norm.svg"))
        asyncio.run(shoot(run_id, (80, 24), ["m"] * 7 + ["x", "x", "x"], "charts-val.svg"))
    finally:
        subprocess.run([trainmon, "stop", run_id], capture_output=True)


if __name__ == "__main__":
    main()
