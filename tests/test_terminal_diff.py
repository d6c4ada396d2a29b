"""The terminal mirror sends only changed cells, and the terminal ends up showing what textual drew.

Each frame is played into two small terminal emulators: one gets textual's own bytes, the other
the mirror's. After every frame both must show the same cells in the same styles.
"""

from __future__ import annotations

import re
from pathlib import Path

from fakes import ScriptedRun, digits_mid_run
from rich.cells import get_character_cell_size

from trainmon.engine.core import messages as msg
from trainmon.tui import app as app_module
from trainmon.tui.app import TrainmonApp
from trainmon.tui.compat import CompositorUpdate  # the one place Textual's private parts are named
from trainmon.tui.terminal_diff import TerminalMirror, mirrored, parse_frame

SEQUENCE = re.compile(r"\x1b\[(\d+);(\d+)H|\x1b\[([0-9;]*)m|(\n)|(.)", re.S)


class Emulator:
    """Just enough of a terminal: cursor moves, SGR (a reset, then attributes), newlines, wide characters."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.cells = [[(" ", ())] * width for _ in range(height)]
        self.x = self.y = 0
        self.style: tuple[str, ...] = ()

    def feed(self, data: str) -> None:
        for move_y, move_x, sgr, newline, char in SEQUENCE.findall(data):
            if move_y:
                self.y, self.x = int(move_y) - 1, int(move_x) - 1
            elif newline:
                self.y, self.x = self.y + 1, 0
            elif char:
                width = get_character_cell_size(char)
                if 0 <= self.y < self.height and self.x + width <= self.width:
                    self.cells[self.y][self.x] = (char, self.style)
                    if width == 2:
                        self.cells[self.y][self.x + 1] = ("", self.style)
                self.x += width
            else:  # SGR, possibly empty
                for param in sgr.split(";"):
                    self.style = () if param in ("", "0") else (*self.style, param)

    def resize(self, width: int, height: int) -> None:
        old = self.cells
        self.width, self.height = width, height
        self.cells = [[old[y][x] if y < len(old) and x < len(old[y]) else (" ", ()) for x in range(width)]
                      for y in range(height)]

    def text(self) -> str:
        return "\n".join("".join(c for c, _ in row) for row in self.cells)


def test_a_frame_that_changes_nothing_sends_nothing():
    mirror = TerminalMirror()
    frame = "\x1b[1;1H\x1b[38;5;1mab\x1b[0m\x1b[38;5;2mcd\x1b[0m"
    assert mirror.frame(frame) == "\x1b[1;1H\x1b[0;38;5;1mab\x1b[0;38;5;2mcd\x1b[0m"
    assert mirror.frame(frame) == ""


def test_one_changed_cell_is_sent_alone_with_its_style():
    mirror = TerminalMirror()
    mirror.frame("\x1b[3;5H\x1b[1mglobal iteration 41\x1b[0m")
    assert mirror.frame("\x1b[3;5H\x1b[1mglobal iteration 42\x1b[0m") == "\x1b[3;23H\x1b[0;1m2\x1b[0m"
    # a style change alone is a change
    assert mirror.frame("\x1b[3;5H\x1b[1mglobal iteration \x1b[0m\x1b[2m42\x1b[0m") == "\x1b[3;22H\x1b[0;2m42\x1b[0m"


def test_close_changes_are_joined_and_far_ones_get_a_cursor_move():
    mirror = TerminalMirror()
    mirror.frame("\x1b[1;1H" + "a" * 40)
    near = mirror.frame("\x1b[1;1H" + "b" + "a" * 3 + "b" + "a" * 35)
    assert near == "\x1b[1;1Hbaaab"
    far = mirror.frame("\x1b[1;1H" + "c" + "a" * 3 + "b" + "a" * 30 + "c" + "a" * 4)
    assert far == "\x1b[1;1Hc\x1b[1;36Hc"


def test_forget_sends_every_cell_again():
    mirror = TerminalMirror()
    frame = "\x1b[2;1Hhello"
    mirror.frame(frame)
    mirror.forget()
    assert mirror.frame(frame) == "\x1b[2;1Hhello"


def test_an_unknown_sequence_is_sent_as_it_came_and_the_mirror_starts_over():
    mirror = TerminalMirror()
    mirror.frame("\x1b[1;1Hhello")
    odd = "\x1b[1;1H\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\"
    assert mirror.frame(odd) == odd
    assert mirror.frame("\x1b[1;1Hhello") == "\x1b[1;1Hhello"  # it no longer trusted what it knew


def test_wide_characters_are_written_whole():
    mirror = TerminalMirror()
    mirror.frame("\x1b[1;1Hab日本cd")
    assert parse_frame("\x1b[1;1Hab日本")[0][3] == ("", "")
    out = mirror.frame("\x1b[1;1Hab日x cd")  # the second wide character became two narrow ones
    screen = Emulator(10, 1)
    screen.feed("\x1b[1;1Hab日本cd")
    screen.feed(out)
    assert screen.text().rstrip() == "ab日x cd"
    assert "日" not in out  # the unchanged wide character is not sent again


def test_the_terminal_shows_what_textual_drew_through_a_session_of_frames():
    """Real frames: a mid-run screen, new snapshots, a pause, the help screen and back, a resize."""

    class Recording(TrainmonApp):
        CSS_PATH = Path(app_module.__file__).with_name("app.tcss")

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.plain, self.diffed = Emulator(100, 30), Emulator(100, 30)
            self.sent_plain = self.sent_diffed = self.frames = 0
            self.mismatches: list[int] = []

        def _display(self, screen, renderable) -> None:  # headless textual writes nothing: play it here
            if not isinstance(renderable, CompositorUpdate):
                return
            raw = renderable.render_segments(self.console)
            out = mirrored(renderable, self.mirror).render_segments(self.console)
            self.plain.feed(raw)
            self.diffed.feed(out)
            self.frames += 1
            self.sent_plain += len(raw.encode())
            self.sent_diffed += len(out.encode())
            if self.plain.cells != self.diffed.cells:
                self.mismatches.append(self.frames)

        def on_resize(self, event) -> None:
            self.plain.resize(event.size.width, event.size.height)
            self.diffed.resize(event.size.width, event.size.height)
            super().on_resize(event)

    run = ScriptedRun(digits_mid_run())
    app = Recording(run)

    async def session() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            for i in range(8):
                snapshot = digits_mid_run(global_iteration=67 + i, iteration_in_epoch=22 + i, loss=0.5 - i / 100,
                                          status=msg.PAUSED if i >= 6 else msg.RUNNING)
                run._snapshot = snapshot
                run.loss_history.extend([(68 + i, 0.5 - i / 100)])
                app.poll_engine()
                app.draw_chart()
                await pilot.pause(0.05)
            await pilot.press("question_mark")
            await pilot.pause(0.1)
            await pilot.press("escape")
            await pilot.pause(0.1)
            await pilot.resize_terminal(80, 24)
            await pilot.pause(0.2)
            app.poll_engine()
            await pilot.pause(0.1)

    import asyncio

    asyncio.run(session())
    assert app.frames > 10
    assert app.mismatches == []
    assert "Progress" in app.diffed.text() and "Loss" in app.diffed.text()
    assert app.sent_diffed < app.sent_plain / 2
