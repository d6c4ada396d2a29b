"""What a detached run costs with 0, 1 and 3 viewers attached, and the whole TUI, against a bare loop.

Every mode is a fresh process tree, gone before the next mode starts. Each round runs every mode
once, in an order rotated from round to round; a mode's figure is the median over rounds of its
ratio to the bare loop *of the same round* (best-of-N would hide costs on a noisy 2-core machine).
Speeds are iterations per second over epochs 2..E (the first epoch, with its imports and warm-up,
is left out of every mode alike), from the run's own epoch lines (events.jsonl).

  (a) bare      a hand-written PyTorch loop (benchmarks/_bare_loop.py)
  (b) engine    `trainmon --detach`, nobody attached
  (c) 1 viewer  the same with one socket viewer polling at 4 Hz (what the TUI does)
  (d) 3 viewers the same with three
  (e) TUI       `trainmon attach` in a real terminal (tmux, 100x30) on the detached engine

Then start-up: seconds from `trainmon` to its first frame in tmux, and from `trainmon attach` to a
full chart of a run with 1,000,000 iterations of recorded history.

    python benchmarks/viewers.py [--epochs 30] [--rounds 6] [--skip-startup]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAINMON = str(Path(sys.executable).with_name("trainmon"))

VIEWER = """
import sys, time
from trainmon.engine.client import RunClient
c = RunClient(sys.argv[1]).subscribe()
while c.alive:
    c.poll(); time.sleep(0.25)
"""



def epoch_rate(lines: list[dict]) -> float:
    """Iterations per second over epochs 2..E from EpochEnded records."""
    ends = [r for r in lines if r["type"] == "EpochEnded"]
    first, last = ends[0], ends[-1]
    return (last["global_iteration"] - first["global_iteration"]) / (last["elapsed"] - first["elapsed"])


def bare(epochs: int) -> float:
    out = subprocess.run([sys.executable, str(HERE / "_bare_loop.py"), str(epochs)], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.split()[-1])


def detached(epochs: int, viewers: int = 0, tui: bool = False) -> float:
    env = dict(os.environ, TRAINMON_HOME=tempfile.mkdtemp(prefix="tm-bench-"))
    out = subprocess.run([TRAINMON, "--detach", "--epochs", str(epochs), "--device", "cpu"], capture_output=True,
                         text=True, env=env, check=True)
    run_id = out.stdout.strip().splitlines()[-1]
    run_dir = Path(env["TRAINMON_HOME"]) / "runs" / run_id
    sock = json.loads((run_dir / "run.json").read_text())["socket"]
    procs = [subprocess.Popen([sys.executable, "-c", VIEWER, sock], env=env) for _ in range(viewers)]
    server = f"tm-bench-{uuid.uuid4().hex[:6]}"
    if tui:  # the real app in a real terminal (tmux), as people run it
        subprocess.run(["tmux", "-L", server, "new-session", "-d", "-x", "100", "-y", "30", "env",
                        f"TRAINMON_HOME={env['TRAINMON_HOME']}", "TERM=xterm-256color", TRAINMON, "attach", run_id],
                       check=True)
    try:
        while json.loads((run_dir / "run.json").read_text())["status"] not in ("finished", "failed", "stopped"):
            time.sleep(0.2)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if tui:
            subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True)
    records = [json.loads(line)["event"] for line in (run_dir / "events.jsonl").read_text().splitlines()]
    shutil.rmtree(env["TRAINMON_HOME"], ignore_errors=True)
    return epoch_rate(records)


MODES = {
    "(a) bare PyTorch loop": lambda e: bare(e),
    "(b) detached engine, 0 viewers": lambda e: detached(e, 0),
    "(c) detached engine, 1 viewer": lambda e: detached(e, 1),
    "(d) detached engine, 3 viewers": lambda e: detached(e, 3),
    "(e) trainmon attach in tmux, 100x30": lambda e: detached(e, tui=True),
}


def tmux_wait(command: str, text: str, env: dict, timeout: float = 60.0) -> float:
    """Seconds from starting `command` in tmux until `text` is on its screen."""
    name = f"tm-bench-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "100", "-y", "30", "env",
                    *(f"{k}={v}" for k, v in env.items()), "sh", "-c", command], check=True)
    try:
        while time.perf_counter() - t0 < timeout:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout
            if text in screen:
                return time.perf_counter() - t0
            time.sleep(0.02)
        raise RuntimeError(f"{text!r} never appeared")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def startup() -> None:
    from trainmon.engine import messages as msg
    from trainmon.engine.loss_archive import LossArchive
    from trainmon.engine.rundir import RunDirectory

    home = tempfile.mkdtemp(prefix="tm-bench-")
    env = {"TRAINMON_HOME": home, "TERM": "xterm-256color"}
    first = tmux_wait(f"{TRAINMON} --epochs 3", "STARTING", env)
    time.sleep(8)
    print(f"`trainmon` to its first frame:                         {first:.2f} s")
    run = RunDirectory.create(Path(home) / "runs" / "20260101-000000-big-0000", {"id": "20260101-000000-big-0000",
                                                                             "job": "big"})
    archive = LossArchive()
    for i in range(1, 1_000_001):
        archive.append(i, 2.0 / (1 + i / 1e5))
    run.write_loss(archive.to_dict())
    run.write_snapshot(msg.Snapshot(status=msg.FINISHED, job="big", epoch=100, epochs=100,
                                    global_iteration=1_000_000, global_step=1_000_000, loss=0.2))
    run.update(status="finished")
    chart = tmux_wait(f"{TRAINMON} attach 20260101-000000-big", "800k", env)
    print(f"`trainmon attach` to a full chart, 10^6 iterations:    {chart:.2f} s")
    shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--skip-startup", action="store_true")
    args = parser.parse_args()
    import torch

    names = list(MODES)
    ratios: dict[str, list[float]] = {n: [] for n in names}
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        got = {n: MODES[n](args.epochs) for n in order}
        for n in names:
            rates[n].append(got[n])
            ratios[n].append(got[n] / got[names[0]])
        print(f"round {r + 1}: " + "  ".join(f"{n[:3]} {got[n]:.0f}" for n in names), file=sys.stderr, flush=True)
    print(f"digits job, batch 32, {args.epochs} epochs, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"{args.rounds} rounds rotated; median of per-round ratios to (a) [min–max]")
    for n in names:
        rs = ratios[n]
        print(f"{n:44s} {statistics.median(rates[n]):7.1f} it/s   {statistics.median(rs):.3f}x  "
              f"[{min(rs):.2f}–{max(rs):.2f}]")
    if not args.skip_startup and shutil.which("tmux"):
        startup()


if __name__ == "__main__":
    main()
