"""The lesson app: a real run, paused, stepped stop by stop; each stop lights up the terms that just happened.

It holds no arithmetic: the stops and their numbers come from `engine/core/lesson.py`, the run's own
counters from its snapshots. Keys: n / space / → advance, b / ← back, a play on by itself, + / - pace,
w what if (the plan for other settings), ↑ / ↓ / PgUp / PgDn scroll the focus area, q end (the run is stopped).
A stop shows once the run reached it: keys pressed while the run steps are ignored (the screen says so).
"""

from __future__ import annotations

from typing import Any, Optional

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from trainmon.engine.core import messages as msg
from trainmon.engine.core.lesson import LessonSettings, Stop

from ..compat import patch_monochrome_filter
from .driver import LessonDriver
from .widgets import LiveLine, StopPanel, TermStrip, validation_figures

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
        Binding("down", "scroll(1, False)", "Scroll", show=False),
        Binding("up", "scroll(-1, False)", "Scroll", show=False),
        Binding("pagedown", "scroll(1, True)", "Scroll", show=False),
        Binding("pageup", "scroll(-1, True)", "Scroll", show=False),
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
        self._keys_for: tuple = ()

    @property
    def pace(self) -> float:
        """Seconds between two stops while playing on by itself."""
        return PACES[self.pace_index]

    def compose(self) -> ComposeResult:
        yield Static(id="lesson-title")
        yield TermStrip(id="terms")
        with VerticalScroll(id="focus", can_focus=False):
            yield StopPanel(id="stop")
        yield LiveLine(id="live")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.set_interval(1 / self.refresh_hz, self.poll_run)
        self.redraw()

    def poll_run(self) -> None:
        update = self.run_handle.poll()
        d = self.driver
        before = (d.iteration, d.epochs_ended, d.ended, d.view, d.asking)
        d.observe(update.snapshot, update.events)
        if update.snapshot is not None or before != (d.iteration, d.epochs_ended, d.ended, d.view, d.asking):
            if before[3:] != (d.view, d.asking):
                self._shown()
            self.redraw()

    def redraw(self) -> None:
        d = self.driver
        place = f"stop {d.view + 1} of {len(d.stops)}"
        self.query_one("#lesson-title", Static).update(f"{place} · {self.lesson_title}")
        reached = d.reached()
        self.query_one(TermStrip).show(d.stop.terms if reached and not d.asking and not d.running else ())
        before = d.stops[d.view - 1] if d.view else None
        figures = validation_figures(d.epochs.get(d.stop.epoch)) if d.stop.name == "validation" and reached else ()
        self.query_one(StopPanel).show(d.stop, d.asking, reached, d.replaying, before, running=d.running,
                                       figures=figures)
        self.query_one(LiveLine).show(d.snapshot, d.ended, self.pace if self.playing else None, running=d.running,
                                      hidden=d.asking)
        keys = (d.view, d.asking, d.at_end)
        if keys != self._keys_for:  # the footer recomposes on a refresh: only when Back / Next may change
            self._keys_for = keys
            self.refresh_bindings()

    def _shown(self) -> None:
        """A new stop (or its answer) is on screen: from its top, and while playing it stays one whole pace."""
        self.query_one("#focus", VerticalScroll).scroll_home(animate=False)
        if self.playing:
            self._restart_timer()

    def action_scroll(self, direction: int, page: bool) -> None:
        """Scroll the focus area one row (or one page) down (`direction` 1) or up (-1): a stop longer than the
        screen (80×24) is read whole."""
        focus = self.query_one("#focus", VerticalScroll)
        if page:
            (focus.scroll_page_down if direction > 0 else focus.scroll_page_up)(animate=False)
        else:
            focus.scroll_relative(y=direction, animate=False)

    # ------------------------------------------------------------------ keys
    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        """Dim Back at the first stop and Next after the last (None: shown, dimmed)."""
        if action == "back" and self.driver.view == 0:
            return None
        if action == "advance" and self.driver.at_end:
            return None
        return True

    def action_advance(self) -> None:
        shown = (self.driver.view, self.driver.asking)
        result = self.driver.advance()
        if result == "end":
            self.notify("the lesson is over: q ends it", timeout=3)
        elif result == "busy":
            self.notify("the run is still stepping: the next stop shows when it gets there", timeout=2)
        if shown != (self.driver.view, self.driver.asking):
            self._shown()
        self.redraw()

    def action_back(self) -> None:
        if self.driver.running:
            self.notify("the run is still stepping: wait for it", timeout=2)
        elif not self.driver.back():
            self.notify("this is the first stop", timeout=2)
        else:
            self._shown()
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
        """One advance a pace: a question shows for one pace, then the run goes on to reveal its answer."""
        if self.driver.running:
            return  # slow motion waits for the run, never runs ahead of it
        if self.driver.at_end:
            self.playing = False
            self._restart_timer()
            self.redraw()
        else:
            self.action_advance()

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
