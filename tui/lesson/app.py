"""The lesson app: a real run, paused, stepped stop by stop; each stop lights up the terms that just happened.

It holds no arithmetic: the stops and their numbers come from `engine/core/lesson.py`, the run's own
counters from its snapshots. Keys: n / space / → advance, b / ← back, a play on by itself, + / - pace,
w what if (the plan for other settings), q end (the run is stopped).
"""

from __future__ import annotations

from typing import Any, Optional

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Static

from trainmon.engine.core import messages as msg
from trainmon.engine.core.lesson import LessonSettings, Stop

from ..compat import patch_monochrome_filter
from .driver import LessonDriver
from .widgets import LiveLine, StopPanel, TermStrip

patch_monochrome_filter()

PACES = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)  # seconds a stop when playing on by itself
DEFAULT_PACE = 3.0


class LessonApp(App[int]):
    """The lesson over `run` (a handle with `send` and `poll`: a `RunClient` on an engine started paused,
    or a `ThreadRun` in tests) through `stops`. Exit code 0; the run is stopped on the way out."""

    CSS_PATH = "lesson.tcss"
    TITLE = "trainmon lesson"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("n,space,right", "advance", "Next", key_display="n/→"),
        Binding("b,left", "back", "Back", key_display="b/←"),
        Binding("a", "autoplay", "Play/Hold"),
        Binding("plus", "faster", "Faster", key_display="+/-"),
        Binding("minus", "slower", "Slower", show=False),
        Binding("w", "what_if", "What if"),
        Binding("q", "end", "End"),
        Binding("ctrl+c", "end", "End", show=False, priority=True),
    ]

    def __init__(self, run: Any, stops: list[Stop], title: str, settings: Optional[LessonSettings] = None,
                 refresh_hz: float = 5.0) -> None:
        super().__init__()
        self.settings = settings
        self.run_handle = run
        self.driver = LessonDriver(stops, run.send)
        self.lesson_title = title
        self.refresh_hz = refresh_hz
        self.pace_index = PACES.index(DEFAULT_PACE)
        self.playing = False
        self._play_timer: Any = None
        self.stop_sent = False

    @property
    def pace(self) -> float:
        """Seconds between two stops while playing on by itself."""
        return PACES[self.pace_index]

    def compose(self) -> ComposeResult:
        yield Static(id="lesson-title")
        yield TermStrip(id="terms")
        yield StopPanel(id="stop")
        yield LiveLine(id="live")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.set_interval(1 / self.refresh_hz, self.poll_run)
        self.redraw()

    def poll_run(self) -> None:
        update = self.run_handle.poll()
        before = (self.driver.iteration, self.driver.epochs_ended, self.driver.ended)
        self.driver.observe(update.snapshot, update.events)
        if update.snapshot is not None or before != (self.driver.iteration, self.driver.epochs_ended,
                                                     self.driver.ended):
            self.redraw()

    def redraw(self) -> None:
        d = self.driver
        place = f"stop {d.view + 1} of {len(d.stops)}"
        self.query_one("#lesson-title", Static).update(f"{place} · {self.lesson_title}")
        reached = d.reached()
        self.query_one(TermStrip).show(d.stop.terms if reached and not d.asking else ())
        before = d.stops[d.view - 1] if d.view else None
        self.query_one(StopPanel).show(d.stop, d.asking, reached, d.replaying, before)
        self.query_one(LiveLine).show(d.snapshot, d.ended, self.pace if self.playing else None)
        self.refresh_bindings()

    # ------------------------------------------------------------------ keys
    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        """Dim Back at the first stop and Next after the last (None: shown, dimmed)."""
        if action == "back" and self.driver.view == 0:
            return None
        if action == "advance" and self.driver.at_end:
            return None
        return True

    def action_advance(self) -> None:
        if self.driver.advance() == "end":
            self.notify("the lesson is over: q ends it", timeout=3)
        self.redraw()

    def action_back(self) -> None:
        if not self.driver.back():
            self.notify("this is the first stop", timeout=2)
        self.redraw()

    def action_autoplay(self) -> None:
        self.playing = not self.playing
        self._restart_timer()
        self.redraw()

    def action_faster(self) -> None:
        self.pace_index = max(0, self.pace_index - 1)
        self._restart_timer()
        self.redraw()

    def action_slower(self) -> None:
        self.pace_index = min(len(PACES) - 1, self.pace_index + 1)
        self._restart_timer()
        self.redraw()

    def _restart_timer(self) -> None:
        if self._play_timer is not None:
            self._play_timer.stop()
            self._play_timer = None
        if self.playing:
            self._play_timer = self.set_interval(self.pace, self._play_step)

    def _play_step(self) -> None:
        if not self.driver.reached():
            return  # slow motion waits for the run, never runs ahead of it
        if self.driver.at_end:
            self.playing = False
            self._restart_timer()
        else:
            self.driver.advance()
        self.redraw()

    def action_what_if(self) -> None:
        """The what-if screen, starting from the lesson's settings."""
        from trainmon.engine.core.lesson_whatif import WhatIf

        from .what_if import WhatIfScreen

        s = self.settings
        if s is None:
            self.notify("what if needs the lesson's settings", timeout=2)
            return
        self.push_screen(WhatIfScreen(WhatIf(s.samples, s.batch_size, s.accum, s.drop_last)))

    def action_end(self) -> None:
        self.stop_run()
        self.exit(0)

    def stop_run(self) -> None:
        """Ask the run to stop after its current iteration, once (an ended run has nothing to stop: a write to
        its closed socket would only raise SIGPIPE)."""
        if not self.driver.ended and not self.stop_sent:
            self.stop_sent = True
            self.run_handle.send(msg.Stop())

    def current_stop(self) -> Optional[Stop]:
        return self.driver.stop
