"""`o`: the job's own output (its stdout and stderr as recorded in the run directory), live.

Lines come collapsed as a terminal leaves them (a tqdm bar is its last state, not 500 lines); the line
being written shows under the log and moves into it when it ends. The log follows new lines unless it
was scrolled up (End follows again). Under torchrun, `k` goes through the ranks: all of them (a line
that several ranks printed folded into one, `ranks 1–7: ...`), then each alone. The files are read from
the run directory (the viewer is on the run's host; `trainmon serve` runs the app there too), twice a
second; a finished run's files are read once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, RichLog, Static

from trainmon.engine.record.run_output import RunOutput

POLL_SECONDS = 0.5
FOLD_LINES = 1000  # all ranks at once: each rank's newest lines folded (a rank alone shows all it keeps)


def _line(text: str) -> Text:
    return Text.from_ansi(text, no_wrap=False, end="")


class OutputScreen(ModalScreen[None]):
    """The output of the run in `run_dir` (`None`: a run without a directory, said so); `live`: follow it."""

    CSS_PATH = "output.tcss"
    BINDINGS = [
        Binding("escape,q,o", "close_output", "Back", key_display="esc/q"),
        Binding("k", "next_rank", "Rank"),
        Binding("end,G", "follow", "Follow"),
        Binding("home,g", "top", "Top"),
    ]

    def __init__(self, run_dir: Optional[Path], live: bool = True) -> None:
        super().__init__()
        self.run_dir, self.live = run_dir, live
        self.output: Optional[RunOutput] = None
        self.rank: Optional[int] = None  # None: every rank (folded)

    def compose(self) -> ComposeResult:
        with Vertical(id="output-body"):
            yield RichLog(id="output-log", wrap=True, max_lines=20000, auto_scroll=False)
            yield Static("", id="output-partial")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        log = self.query_one(RichLog)
        log.can_focus = True
        log.focus()
        if self.run_dir is None or not Path(self.run_dir).is_dir():
            self._title("no run directory")
            log.write("This run has no run directory to read its output from (a loop in this process without "
                      "one): its prints went to its own terminal.")
            return
        self.output = RunOutput(Path(self.run_dir))
        self._rewrite()
        if self.live:
            self.set_interval(POLL_SECONDS, self.poll_output)

    @property
    def ranks(self) -> list[int]:
        return sorted(self.output.ranks) if self.output is not None else [0]

    def poll_output(self) -> None:
        """New lines from the files: appended (following only if the log was at its end)."""
        if self.output is None:
            return
        before = set(self.output.ranks)
        new = self.output.poll()
        if set(self.output.ranks) != before or (self.rank is None and len(self.output.ranks) > 1 and new):
            self._rewrite(keep_place=True)  # folding lines up across ranks: the listing is made again
            return
        lines = new.get(self.rank if self.rank is not None else 0, [])
        log = self.query_one(RichLog)
        at_end = log.scroll_offset.y >= log.max_scroll_y
        for line in lines:
            log.write(_line(line), scroll_end=at_end)
        self._show_partial()
        if lines:
            self._title()

    def _rewrite(self, keep_place: bool = False) -> None:
        log = self.query_one(RichLog)
        at_end = log.scroll_offset.y >= log.max_scroll_y
        y = log.scroll_offset.y
        log.clear()
        assert self.output is not None
        lines = self.output.lines(self.rank, last=FOLD_LINES if self.rank is None else None)
        skipped = self.output.skipped_bytes(self.rank)
        if skipped:
            log.write(Text(f"… {skipped:,} older bytes not shown (they are in the run directory's output files)",
                           style="dim"))
        if not lines and not self.output.partial(self.rank):
            log.write(Text("no output yet: nothing printed" if self.live else "the job printed nothing", style="dim"))
        for line in lines:
            log.write(_line(line), scroll_end=False)
        if not keep_place or at_end:
            log.scroll_end(animate=False, immediate=False)
        else:
            log.scroll_to(y=y, animate=False)
        self._show_partial()
        self._title()

    def _show_partial(self) -> None:
        partial = self.output.partial(self.rank) if self.output is not None else ""
        widget = self.query_one("#output-partial", Static)
        widget.display = bool(partial)
        widget.update(_line(partial) if partial else "")

    def _title(self, text: Optional[str] = None) -> None:
        body = self.query_one("#output-body")
        if text is None:
            assert self.output is not None
            ranks = self.ranks
            which = ("" if len(ranks) == 1 else
                     " — all ranks" if self.rank is None else f" — rank {self.rank} of {len(ranks)}")
            count = len(self.output.lines(self.rank, last=FOLD_LINES if self.rank is None else None))
            text = f"{count:,} lines{which}" + (" · live" if self.live else "")
        body.border_title = f"The job's output — {text}"
        self.refresh_bindings()  # k: only with several ranks

    def check_action(self, action: str, parameters: tuple[object, ...]) -> Optional[bool]:
        if action == "next_rank":
            return len(self.ranks) > 1  # one process: no ranks to go through, the key is not shown
        return True

    def action_next_rank(self) -> None:
        """All ranks (folded) → rank 0 → rank 1 → ... → all ranks."""
        ranks = self.ranks
        order: list[Optional[int]] = [None, *ranks]
        self.rank = order[(order.index(self.rank) + 1) % len(order)]
        self._rewrite()

    def action_follow(self) -> None:
        self.query_one(RichLog).scroll_end(animate=False)

    def action_top(self) -> None:
        self.query_one(RichLog).scroll_home(animate=False)

    def action_close_output(self) -> None:
        if self.output is not None:
            self.output.close()
        self.dismiss(None)
