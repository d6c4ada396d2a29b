"""Real `trainmon` processes for tests: start a detached engine, read `ls --json`, wait for a state.

Every engine started here records itself under `$TRAINMON_HOME` (a fresh folder per test, see
conftest's `trainmon_home`), whose teardown SIGKILLs any engine still holding its lock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

TRAINMON = str(Path(sys.executable).with_name("trainmon"))


def trainmon(*args: str, timeout: float = 120, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    return subprocess.run([TRAINMON, *args], capture_output=True, text=True, timeout=timeout, env=env)


def ls_json(env: Optional[dict] = None) -> list[dict[str, Any]]:
    result = trainmon("ls", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def row(run_id: str, env: Optional[dict] = None) -> dict[str, Any]:
    """`trainmon ls --json`'s row for `run_id`."""
    rows = [r for r in ls_json(env) if r["id"] == run_id]
    assert len(rows) == 1, rows
    return rows[0]


def wait_until(probe: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, what: str = "") -> Any:
    """Call `probe` until it returns something true; that value. AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what or probe}; last: {last!r}")


def start_detached(*args: str, env: Optional[dict] = None) -> tuple[str, Path]:
    """`trainmon --detach ARGS`: the run's id (printed) and its directory (from `ls --json`)."""
    result = trainmon("--detach", *args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = result.stdout.strip()
    return run_id, Path(row(run_id, env)["path"])


def run_info(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "run.json").read_text())


def kill_engine(run_dir: Path) -> None:
    """SIGKILL the engine recorded in `run_dir` if it still lives (for `finally` blocks)."""
    from trainmon.engine.record.rundir import engine_alive

    if engine_alive(run_dir):
        pid = run_info(run_dir).get("pid")
        if pid and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def pid_gone(pid: int) -> bool:
    """True once `pid` no longer runs (a zombie counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def untimed(line: str) -> str:
    """A headless or `logs` line without its trailing ` time=2026-12-07T01:02:03Z` (the fields before it)."""
    head, sep, when = line.rstrip("\n").rpartition(" time=")
    assert sep and len(when) == 20 and when.endswith("Z"), line
    return head
