"""The real `trainmon` command in a real terminal (tmux): send keys, read the screen."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from tmux import needs_tmux, tmux  # noqa: F401 - the fixture

TRAINMON = str(Path(sys.executable).with_name("trainmon"))
pytestmark = needs_tmux


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
