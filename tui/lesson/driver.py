"""What the lesson screen is doing: which stop it shows, which question waits, how far the run was asked to go.

No Textual here, so the stepping is tested without a screen. The run is steered only with `StepOnce`
(one iteration each, the engine waiting paused between them); it never rewinds, so going back
(`back`) moves the view alone and going forward again replays explanations until the view catches up.
A stop is shown only once the run reached it: while the run steps (`running`), the screen keeps what
it showed and further advances are ignored (`"busy"`), so fast keys or autoplay never run ahead of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from trainmon.engine.core import messages as msg
from trainmon.engine.core.lesson import Stop


@dataclass
class LessonDriver:
    """The lesson's position over `stops`, steering a run through `send` (a handle's `send`).

    `view` is the stop on screen; `furthest` the furthest stop the run was asked to reach; `asking`
    is True while the question of stop `view` is shown and the stop is not revealed yet. `target` is the
    stop the run is stepping to and has not reached yet (None when it stands still at the view's stop).
    `granted` counts the iterations asked for (`StepOnce`s sent); `iteration` / `epochs_ended` / `ended`
    are what the run reported (`observe`).
    """

    stops: list[Stop]
    send: Callable[[Any], Any]
    view: int = 0
    furthest: int = 0
    asking: bool = False
    granted: int = 0
    iteration: int = 0
    epochs_ended: int = 0
    ended: bool = False
    target: Optional[int] = None
    snapshot: Optional[msg.Snapshot] = None
    epochs: dict[int, msg.EpochEnded] = field(default_factory=dict)  # what each ended epoch reported
    events: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.asking = self.stops[0].question is not None  # the first screen: predict before the plan shows
        if not self.asking:
            self._go(0)

    @property
    def stop(self) -> Stop:
        return self.stops[self.view]

    @property
    def at_end(self) -> bool:
        return self.view == len(self.stops) - 1 and not self.asking

    @property
    def running(self) -> bool:
        """The run is stepping to the next stop; the screen waits for it (advances are ignored)."""
        return self.target is not None

    @property
    def replaying(self) -> bool:
        """The view is behind the run (after `back`): advancing shows what already happened."""
        return self.view < self.furthest

    def reached(self, stop: Optional[Stop] = None) -> bool:
        """The run has done what `stop` (default: the one shown) needs: its iterations, and its epoch's end."""
        s = self.stop if stop is None else stop
        if self.ended:
            return True
        return self.iteration >= s.global_iteration and (not s.epoch_done or self.epochs_ended >= s.epoch)

    def advance(self) -> str:
        """One step of the lesson: `"reveal"` (the question on screen is answered: the run goes to its stop),
        `"ask"` (the next stop's question shows first; nothing runs), `"move"` (to the next stop: at once when
        looking back, else once the run reached it), `"busy"` (the run is still stepping: ignored) or `"end"`
        (nothing after the last stop). Sends the `StepOnce`s the stop needs, never more."""
        if self.running:
            return "busy"
        if self.asking:
            self._go(self.view)
            return "reveal"
        if self.view >= len(self.stops) - 1:
            return "end"
        upcoming = self.view + 1
        if upcoming <= self.furthest:  # looking back: the run was there already
            self.view = upcoming
            return "move"
        if self.stops[upcoming].question is not None:
            self.view, self.asking = upcoming, True
            return "ask"
        self._go(upcoming)
        return "move"

    def back(self) -> bool:
        """Show the previous stop's explanation (the run stays where it is). False at the first stop, or
        while the run steps (the screen waits for it)."""
        if self.view == 0 or self.running:
            return False
        if self.asking:  # the question's stop has not run: back to the stop the run stands at
            self.asking = False
        self.view -= 1
        return True

    def _go(self, index: int) -> None:
        """Step the run to stop `index`; the view moves there (and its question is answered) once it is reached."""
        if index > self.furthest or self.granted == 0 and index == 0:
            self.furthest = index
            need = self.stops[index].global_iteration - self.granted
            for _ in range(max(0, need)):
                self.send(msg.StepOnce())
            self.granted += max(0, need)
        self.target = index
        self.settle()

    def settle(self) -> bool:
        """Show the stop the run was stepping to once it reached it; True when the view moved (or revealed)."""
        if self.target is None or not self.reached(self.stops[self.target]):
            return False
        self.view, self.asking, self.target = self.target, False, None
        return True

    def observe(self, snapshot: Optional[msg.Snapshot], events: list) -> None:
        """Take what the run reported since the last poll."""
        if snapshot is not None:
            self.snapshot = snapshot
            self.iteration = max(self.iteration, snapshot.global_iteration)
        for event in events:
            if isinstance(event, msg.EpochEnded):
                self.epochs_ended = max(self.epochs_ended, event.epoch)
                self.epochs[event.epoch] = event
            elif isinstance(event, (msg.Finished, msg.Failed)):
                self.ended = True
                self.events.append(type(event).__name__)
        self.settle()
