"""The real `trainmon` command in a real terminal (tmux): send keys, read the screen."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

TRAINMON = str(Path(sys.executable).with_name("trainmon"))
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self, command: str, width: int, height: int, tmp_path: Path) -> None:
        self.name = f"trainmon-test-{uuid.uuid4().hex[:8]}"
        self.exit_file = tmp_path / "exit"
        wrapped = f"{command}; echo $? > {self.exit_file}; sleep 30"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                        "env", "TERM=xterm-256color", "sh", "-c", wrapped], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

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
        raise AssertionError(f"trainmon did not exit; screen:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def tmux(tmp_path):
    sessions = []

    def start(command: str, width: int = 100, height: int = 30) -> Tmux:
        session = Tmux(command, width, height, tmp_path)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.kill()


@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
def test_trainmon_in_a_real_terminal(tmux, size):
    t = tmux(f"{TRAINMON} --epochs 200", *size)
    screen = t.wait_for("RUNNING")
    for pane in ("Progress", "Gradient accumulation", "Devices", "Loss"):
        assert pane in screen
    t.wait_for("global iteration")
    t.keys("space")
    screen = t.wait_for("PAUSED")
    t.keys("+")
    screen = t.wait_for("batch size 32 → 64 at start of epoch")
    t.keys("?")
    screen = t.wait_for("What the numbers mean")
    assert "ceil(1437 / 32) = 45" in screen.replace("\n", " ") or "iterations per epoch" in screen
    t.keys("Escape")
    deadline = time.monotonic() + 10
    while "What the numbers mean" in t.screen() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "What the numbers mean" not in t.screen()
    t.keys("q")
    assert t.exit_code() == 0
    time.sleep(0.5)
    assert "\x1b[?1049h" not in t.screen()  # the alternate screen is gone: the terminal was restored
