"""A real terminal for tests: the `trainmon` command in a tmux pane, keys in, screen out.

Each session runs on a tmux server of its own (`-L`), so it gets this test's environment
(TRAINMON_HOME included) and not that of a tmux server someone else started, and killing the
session ends that server: the pane's processes get SIGHUP as when a terminal is closed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """One tmux session running `command` in a `width` x `height` pane; `exit_code()` once it ends."""

    def __init__(self, command: str, width: int, height: int, tmp_path: Path) -> None:
        self.name = f"trainmon-test-{uuid.uuid4().hex[:8]}"
        self.exit_file = tmp_path / f"exit-{self.name}"
        env = ["TERM=xterm-256color"]
        if "TRAINMON_HOME" in os.environ:
            env.append(f"TRAINMON_HOME={os.environ['TRAINMON_HOME']}")
        wrapped = f"{command}; echo $? > {shlex.quote(str(self.exit_file))}; sleep 30"
        self._tmux("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                   "env", *env, "sh", "-c", wrapped, check=True)

    def _tmux(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True, check=check)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name).stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys, check=True)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}")

    def exit_code(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exit_file.exists() and self.exit_file.read_text().strip():
                return int(self.exit_file.read_text())
            time.sleep(0.2)
        raise AssertionError(f"the command did not exit; screen:\n{self.screen()}")

    def pane_pid(self) -> Optional[int]:
        """The pid of the pane's shell (`sh -c COMMAND`), or None when the session is gone."""
        out = self._tmux("list-panes", "-t", self.name, "-F", "#{pane_pid}").stdout.strip()
        return int(out) if out else None

    def modes(self) -> dict[str, bool]:
        """The terminal modes the program left or set: alternate screen, mouse reporting, cursor shown."""
        out = self._tmux("display-message", "-p", "-t", self.name,
                         "#{alternate_on} #{mouse_any_flag} #{cursor_flag}").stdout.split()
        return dict(zip(("alternate_screen", "mouse", "cursor"), (v == "1" for v in out)))

    def program_pid(self, word: str = "trainmon") -> int:
        """The pid of the one process under the pane's shell whose command line holds `word` (an engine
        that a viewer started is its child too, and is left out)."""
        import psutil

        shell = psutil.Process(self.pane_pid())
        found = [p for p in shell.children(recursive=True)
                 if word in " ".join(p.cmdline()) and "trainmon.engine.run.daemon" not in p.cmdline()]
        assert len(found) == 1, [p.cmdline() for p in shell.children(recursive=True)]
        return found[0].pid

    def record_output(self, path: Path) -> None:
        """From now on, append every byte the program writes to the pane (escape sequences too) to `path`."""
        self._tmux("pipe-pane", "-O", "-t", self.name, f"cat >> {shlex.quote(str(path))}", check=True)

    def kill(self) -> None:
        """Close the terminal: the processes in the pane get SIGHUP."""
        self._tmux("kill-session", "-t", self.name)


@pytest.fixture
def tmux(tmp_path):
    """`tmux(command, width=100, height=30) -> Tmux`; every session is killed at teardown."""
    sessions = []

    def start(command: str, width: int = 100, height: int = 30) -> Tmux:
        session = Tmux(command, width, height, tmp_path)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.kill()
