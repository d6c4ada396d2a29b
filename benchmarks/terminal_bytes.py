"""Bytes the TUI sends to its terminal, as an SSH link would carry them (a script, not a timed test).

Runs `trainmon` (the digits job by default) in a tmux pane of its own tmux server at 100×30, copies
everything the app writes to the pane with `tmux pipe-pane`, and counts it over a window while the
run is running, then over a window after `space` has paused it. Prints KB/s for each (1 KB = 1000
bytes). Targets (issue 9, item 18): ≤ 5 KB/s running, ≤ 0.5 KB/s paused.

    python benchmarks/terminal_bytes.py [--seconds 20] [--size 100x30] [--refresh-hz 4] [--keep FILE]

Needs tmux. The run is recorded under a temporary TRAINMON_HOME and stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TRAINMON = str(Path(sys.executable).with_name("trainmon"))


class Pane:
    """`command` in a detached tmux session on a server of its own (`tmux -L NAME`)."""

    def __init__(self, command: str, width: int, height: int, env: dict[str, str]) -> None:
        self.name = f"trainmon-bytes-{uuid.uuid4().hex[:8]}"
        assignments = [f"{k}={v}" for k, v in env.items()]
        self.tmux("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                  "env", *assignments, "sh", "-c", f"{command}; sleep 30", check=True)

    def tmux(self, *args: str, check: bool = False) -> str:
        return subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True, check=check).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name)

    def wait_for(self, text: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen():
            if time.monotonic() > deadline:
                raise SystemExit(f"{text!r} never appeared; screen:\n{self.screen()}")
            time.sleep(0.2)

    def pipe_to(self, path: Path) -> None:
        self.tmux("pipe-pane", "-o", "-t", self.name, f"cat >> {shlex.quote(str(path))}", check=True)

    def kill(self) -> None:
        self.tmux("kill-server")


def count_bytes(path: Path, seconds: float) -> tuple[int, int, float]:
    """Bytes appended to `path` over `seconds`: (offset of the first, how many, seconds actually elapsed)."""
    start_size, start = path.stat().st_size, time.monotonic()
    time.sleep(seconds)
    return start_size, path.stat().st_size - start_size, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each window (s)")
    parser.add_argument("--warmup", type=float, default=5.0, help="wait after the first frame and after pausing (s)")
    parser.add_argument("--size", default="100x30", help="terminal size, COLUMNSxROWS")
    parser.add_argument("--refresh-hz", type=float, default=None, help="the TUI's --refresh-hz (default: its own)")
    parser.add_argument("--job", default="digits")
    parser.add_argument("--keep", default=None, metavar="PREFIX",
                        help="keep each window's bytes in PREFIX-running.bytes and PREFIX-paused.bytes")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("tmux is not installed")
    width, height = (int(v) for v in args.size.lower().split("x"))
    home = Path(tempfile.mkdtemp(prefix="trainmon-bytes-"))
    capture = home / "pane.bytes"
    capture.touch()
    command = [TRAINMON, "--job", args.job, "--epochs", "100000"]
    if args.refresh_hz is not None:
        command += ["--refresh-hz", str(args.refresh_hz)]
    env = {"TERM": "xterm-256color", "TRAINMON_HOME": str(home), "LANG": os.environ.get("LANG", "C.UTF-8")}
    running_at = running = paused_at = paused = 0
    pane = Pane(shlex.join(command), width, height, env)
    try:
        pane.wait_for("RUNNING")
        pane.wait_for("global iteration")
        time.sleep(args.warmup)
        pane.pipe_to(capture)
        time.sleep(0.5)
        running_at, running, running_s = count_bytes(capture, args.seconds)
        pane.tmux("send-keys", "-t", pane.name, "space")
        pane.wait_for("PAUSED")
        time.sleep(args.warmup)
        paused_at, paused, paused_s = count_bytes(capture, args.seconds)
        pane.tmux("send-keys", "-t", pane.name, "q")
        time.sleep(1.0)
    finally:
        pane.kill()
        subprocess.run([TRAINMON, "stop"], env={**os.environ, "TRAINMON_HOME": str(home)}, capture_output=True,
                       timeout=60)
        if args.keep is not None and capture.exists():
            data = capture.read_bytes()
            for name, (at, size) in {"running": (running_at, running), "paused": (paused_at, paused)}.items():
                Path(f"{args.keep}-{name}.bytes").write_bytes(data[at:at + size])
        shutil.rmtree(home, ignore_errors=True)
    print(f"{args.job} job, terminal {width}x{height}, tmux pipe-pane, {args.seconds:g} s windows "
          f"(1 KB = 1000 bytes)")
    print(f"running  {running / running_s / 1000:6.2f} KB/s   ({running} bytes in {running_s:.1f} s)")
    print(f"paused   {paused / paused_s / 1000:6.2f} KB/s   ({paused} bytes in {paused_s:.1f} s)")


if __name__ == "__main__":
    main()
