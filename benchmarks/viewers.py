"""What a detached run costs with 0, 1 and 3 viewers attached, the whole TUI, and a browser tab, against a bare loop.

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
  (f) served    `trainmon serve RUN` and one headless-chromium tab on its URL (selenium, the flags of
                tests/test_serve.py), kept open for the run (benchmarks/_browser.py)

For (e) and (f) the window starts at the first epoch end after the viewer shows the run (its start-up
is a one-off, not what watching costs); the table says which epochs each mode's figure covers. For
(b)..(f) it also gives the CPU seconds, and cores (CPU s / wall s), of the engine and of the viewing
processes over the same window: the socket viewers; the tmux server and the `trainmon attach` in it;
`trainmon serve` with its tab's `trainmon attach`, and chromium (all its processes) with chromedriver.

Then start-up: seconds from `trainmon` to its first frame in tmux, and from `trainmon attach` to a
full chart of a run with 1,000,000 iterations of recorded history.

    python benchmarks/viewers.py [--epochs 30] [--rounds 6] [--only acef] [--skip-startup]
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
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _browser
TRAINMON = str(Path(sys.executable).with_name("trainmon"))

VIEWER = """
import sys, time
from trainmon.engine.control.client import RunClient
c = RunClient(sys.argv[1]).subscribe()
while c.alive:
    c.poll(); time.sleep(0.25)
"""



def epoch_rate(lines: list[dict], ready: Optional[float] = None) -> tuple[float, dict, dict]:
    """Iterations per second over epochs 2..E from the EpochEnded lines of events.jsonl; the window's
    first and last lines. With `ready` (a wall time: when the viewer first showed the run) the window
    starts at the first epoch end at or after it instead, so that a viewer's start-up is left out."""
    ends = [r for r in lines if r["event"]["type"] == "EpochEnded"]
    first, last = ends[0], ends[-1]
    if ready is not None:
        later = [r for r in ends if r["time"] >= ready]
        if len(later) < 2:
            raise RuntimeError("the viewer came up too late to leave two epochs to measure: raise --epochs")
        first = later[0]
    a, b = first["event"], last["event"]
    return (b["global_iteration"] - a["global_iteration"]) / (b["elapsed"] - a["elapsed"]), first, last


class CpuSampler:
    """CPU seconds (user + system) of groups of process trees, sampled over a run.

    Each sample reads every live process of each group; a process's figure is the last one read (so
    a helper that ends between samples loses at most one interval). `at(t)` is the totals of the
    sample nearest to wall time t."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.last: dict[tuple, float] = {}
        self.history: list[tuple[float, dict[str, float]]] = []

    def sample(self) -> None:
        import psutil

        for name, pids in self.groups.items():
            for pid in pids():
                try:
                    p = psutil.Process(pid)
                    t = p.cpu_times()
                    self.last[(name, pid, p.create_time())] = t.user + t.system
                except psutil.Error:
                    pass
        totals = {name: 0.0 for name in self.groups}
        for (name, _, _), seconds in self.last.items():
            totals[name] += seconds
        self.history.append((time.time(), totals))

    def at(self, t: float) -> tuple[float, dict[str, float]]:
        return min(self.history, key=lambda h: abs(h[0] - t))


def _tree(pid: Optional[int], include_root: bool = True) -> Callable[[], list[int]]:
    def pids() -> list[int]:
        if pid is None:
            return []
        from _browser import descendants

        found = descendants(pid)
        return found if include_root else found[1:]
    return pids


def bare(epochs: int) -> dict:
    out = subprocess.run([sys.executable, str(HERE / "_bare_loop.py"), str(epochs)], capture_output=True, text=True,
                         check=True)
    return {"rate": float(out.stdout.split()[-1])}


def detached(epochs: int, viewers: int = 0, tui: bool = False, serve: bool = False) -> dict:
    """The run's speed ("rate"), the epoch its window starts at ("from"), and the CPU use of the
    engine and of the viewing processes over that window ("cpu": group -> (seconds, cores))."""
    env = dict(os.environ, TRAINMON_HOME=tempfile.mkdtemp(prefix="tm-bench-"))
    out = subprocess.run([TRAINMON, "--detach", "--epochs", str(epochs), "--device", "cpu"], capture_output=True,
                         text=True, env=env, check=True)
    run_id = out.stdout.strip().splitlines()[-1]
    run_dir = Path(env["TRAINMON_HOME"]) / "runs" / run_id
    info = json.loads((run_dir / "run.json").read_text())
    sock = info["socket"]
    groups: dict[str, Callable[[], list[int]]] = {"engine": _tree(info.get("pid"))}
    procs = [subprocess.Popen([sys.executable, "-c", VIEWER, sock], env=env) for _ in range(viewers)]
    if procs:
        groups["socket viewers"] = lambda: [p.pid for p in procs]
    server = f"tm-bench-{uuid.uuid4().hex[:6]}"
    served = browser = None
    ready: Optional[float] = None
    try:
        if tui:  # the real app in a real terminal (tmux), as people run it
            subprocess.run(["tmux", "-L", server, "new-session", "-d", "-x", "100", "-y", "30", "env",
                            f"TRAINMON_HOME={env['TRAINMON_HOME']}", "TERM=xterm-256color", TRAINMON, "attach",
                            run_id], check=True)
            tmux_pid = int(subprocess.run(["tmux", "-L", server, "display-message", "-p", "#{pid}"],
                                          capture_output=True, text=True, check=True).stdout)
            groups["tmux server"] = lambda: [tmux_pid]
            groups["trainmon attach"] = _tree(tmux_pid, include_root=False)
            deadline = time.monotonic() + 90
            while run_id not in subprocess.run(["tmux", "-L", server, "capture-pane", "-p"], capture_output=True,
                                               text=True).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError("the TUI never showed the run")
                time.sleep(0.1)
            ready = time.time()
        if serve:  # `trainmon serve` and one headless chromium tab on it, kept open for the run
            from _browser import Browser, Served

            served = Served(TRAINMON, run_id, env)
            groups["trainmon serve (+ tab's attach)"] = served.pids
            browser = Browser()
            groups["chromium + chromedriver"] = browser.pids
            ready = browser.open_and_wait(served.url(), run_id)
        cpu = CpuSampler(groups)
        while json.loads((run_dir / "run.json").read_text())["status"] not in ("finished", "failed", "stopped"):
            cpu.sample()
            for _ in range(5):
                time.sleep(0.2)
        cpu.sample()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if tui:
            subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True)
        if browser is not None:
            browser.close()
        if served is not None:
            served.kill()
    lines = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    shutil.rmtree(env["TRAINMON_HOME"], ignore_errors=True)
    rate, first, last = epoch_rate(lines, ready)
    (t0, c0), (t1, c1) = cpu.at(first["time"]), cpu.at(last["time"])
    return {"rate": rate, "from": first["event"]["epoch"] + 1,
            "cpu": {g: (c1[g] - c0[g], (c1[g] - c0[g]) / (t1 - t0) if t1 > t0 else float("nan")) for g in c1}}


MODES = {
    "(a) bare PyTorch loop": lambda e: bare(e),
    "(b) detached engine, 0 viewers": lambda e: detached(e, 0),
    "(c) detached engine, 1 viewer": lambda e: detached(e, 1),
    "(d) detached engine, 3 viewers": lambda e: detached(e, 3),
    "(e) trainmon attach in tmux, 100x30": lambda e: detached(e, tui=True),
    "(f) trainmon serve, one headless-chromium tab": lambda e: detached(e, serve=True),
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
    from trainmon.engine.core import messages as msg
    from trainmon.engine.record.loss_archive import LossArchive
    from trainmon.engine.record.rundir import RunDirectory

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
    parser.add_argument("--only", default="", metavar="LETTERS",
                        help="the modes to run, e.g. 'acef' or 'a,c,e,f' (default: all); (a) is always run")
    parser.add_argument("--skip-startup", action="store_true")
    args = parser.parse_args()
    import torch

    letters = set(args.only.replace(",", "").lower()) | {"a"} if args.only else set("abcdef")
    unknown = letters - {n[1] for n in MODES}
    if unknown:
        parser.error(f"no such mode: {', '.join(sorted(unknown))} (modes are a..f)")
    names = [n for n in MODES if n[1] in letters]
    if "f" in letters:
        from _browser import available

        if (why := available()) is not None:
            print(f"skipping (f): it {why}", file=sys.stderr)
            names.remove(next(n for n in names if n[1] == "f"))
    ratios: dict[str, list[float]] = {n: [] for n in names}
    rates: dict[str, list[float]] = {n: [] for n in names}
    starts: dict[str, list[int]] = {n: [] for n in names}
    cpu: dict[str, dict[str, list[tuple[float, float]]]] = {n: {} for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        got = {n: MODES[n](args.epochs) for n in order}
        for n in names:
            rates[n].append(got[n]["rate"])
            ratios[n].append(got[n]["rate"] / got[names[0]]["rate"])
            starts[n].append(got[n].get("from", 2))
            for group, figures in got[n].get("cpu", {}).items():
                cpu[n].setdefault(group, []).append(figures)
        print(f"round {r + 1}: " + "  ".join(f"{n[:3]} {got[n]['rate']:.0f}" for n in names), file=sys.stderr,
              flush=True)
    print(f"digits job, batch 32, {args.epochs} epochs, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"{args.rounds} rounds rotated"
          + (f", OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}" if os.environ.get("OMP_NUM_THREADS") else "")
          + "; median of per-round ratios to (a) [min–max]")
    for n in names:
        rs = ratios[n]
        window = f"epochs {min(starts[n])}..{args.epochs}" if min(starts[n]) == max(starts[n]) else \
            f"epochs {min(starts[n])}-{max(starts[n])}..{args.epochs}"
        print(f"{n:46s} {statistics.median(rates[n]):7.1f} it/s   {statistics.median(rs):.3f}x  "
              f"[{min(rs):.2f}–{max(rs):.2f}]   {window}")
    if any(cpu[n] for n in names):
        print("\nCPU over the same windows (psutil user+system, sampled each second), median over rounds:")
        print(f"{'':46s} {'':32s} {'CPU s':>7s} {'cores':>7s}")
        for n in names:
            for group, figures in cpu[n].items():
                print(f"{n:46s} {group:32s} {statistics.median(f[0] for f in figures):7.2f} "
                      f"{statistics.median(f[1] for f in figures):7.3f}")
    if not args.skip_startup and shutil.which("tmux"):
        startup()


if __name__ == "__main__":
    main()
