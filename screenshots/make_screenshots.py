"""Export the README's screenshots from the app itself, attached to a real detached digits run.

    python screenshots/make_screenshots.py

Writes main.svg (mid-run, attached), attached.svg (a second monitor attached after the first
detached, the chart back from iteration 1), paused.svg (paused with a pending batch-size change),
teaching.svg (the `?` screen), resumed.svg (the run stopped, then `trainmon resume`d: the chart
goes on with a resume marker) and main-80x24.svg next to this file.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from trainmon.engine.control.client import RunClient
from trainmon.engine.core import messages as msg
from trainmon.engine.record.rundir import resolve_run
from trainmon.tui.app import TrainmonApp

HERE = Path(__file__).resolve().parent


async def wait(pilot, predicate, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and not predicate(pilot.app.snapshot):
        await pilot.pause(0.1)


async def shoot(size: tuple[int, int], full: bool) -> None:
    trainmon = str(Path(sys.executable).with_name("trainmon"))
    run_id = subprocess.run([trainmon, "--detach", "--epochs", "300", "--accum", "4"], capture_output=True, text=True,
                            check=True).stdout.split()[-1]
    run = RunClient(resolve_run(run_id).socket_path).subscribe()
    app = TrainmonApp(run, run_id=run_id)
    suffix = "" if full else f"-{size[0]}x{size[1]}"
    async with app.run_test(size=size) as pilot:
        await wait(pilot, lambda s: s.epoch >= 3 and s.iteration_in_epoch >= 20)
        await pilot.pause(1.0)
        app.save_screenshot(f"main{suffix}.svg", str(HERE))
        if full:
            await pilot.press("space")
            await wait(pilot, lambda s: s.status == msg.PAUSED)
            await pilot.press("plus")
            await pilot.press("right_square_bracket")
            await wait(pilot, lambda s: len(s.pending) == 2)
            await pilot.pause(0.6)
            app.save_screenshot("paused.svg", str(HERE))
            await pilot.press("question_mark")
            await pilot.pause(0.5)
            app.save_screenshot("teaching.svg", str(HERE))
            await pilot.press("escape")
        if full:  # detach, then attach again: the whole chart comes back from iteration 1
            await pilot.press("d")
    run.close()
    if full:
        again = RunClient(resolve_run(run_id).socket_path).subscribe()
        app = TrainmonApp(again, run_id=run_id)
        async with app.run_test(size=size) as pilot:
            await wait(pilot, lambda s: s.status == msg.PAUSED and len(s.pending) == 2, timeout=20)
            await pilot.pause(1.5)  # the chart redraws once a second
            app.save_screenshot("attached.svg", str(HERE))
        again.close()
    subprocess.run([trainmon, "stop", run_id], capture_output=True)
    if full:  # stopped mid-epoch (a checkpoint at the stop), then resumed: the chart goes on, marked
        subprocess.run([trainmon, "resume", "--detach", run_id], capture_output=True, check=True)
        resumed = RunClient(resolve_run(run_id).socket_path).subscribe()
        app = TrainmonApp(resumed, run_id=run_id)
        async with app.run_test(size=size) as pilot:
            await wait(pilot, lambda s: s.status == msg.RUNNING and s.epoch >= 5, timeout=60)
            await pilot.pause(1.5)
            app.save_screenshot("resumed.svg", str(HERE))
        resumed.close()
        subprocess.run([trainmon, "stop", run_id], capture_output=True)


if __name__ == "__main__":
    os.environ["TRAINMON_HOME"] = tempfile.mkdtemp(prefix="trainmon-shots-")
    asyncio.run(shoot((100, 30), full=True))
    asyncio.run(shoot((80, 24), full=False))
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("*.svg"))))
