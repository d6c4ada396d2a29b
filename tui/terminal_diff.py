"""Write to the terminal only the cells that changed since the last frame.

textual repaints the whole region of a widget that refreshes, and writes each segment with its full
colours followed by a reset. Over SSH that was most of the bytes: at 100×30 the app sent ~35 KB/s
while training and ~6 KB/s while paused. `TerminalMirror` keeps what the terminal shows, cell by
cell; each frame textual renders is read back into cells, and only the cells that differ are
written, with one colour code per change of style. Anything it does not understand is written as
textual made it, and the mirror starts again from nothing.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Optional

from rich.cells import get_character_cell_size

from .compat import RewrittenFrame, is_frame

# what textual's frames are made of: cursor moves, SGR colour codes, newlines between lines, text
_TOKEN = re.compile(r"\x1b\[(\d+);(\d+)H|\x1b\[([0-9;:]*)m|\n|[\x00-\x1f\x7f]")
_RESET = "\x1b[0m"
MERGE_GAP = 4  # unchanged cells between two changes are rewritten rather than skipped with a cursor move

Cell = tuple[str, str]  # (text, SGR parameters; "" for the default style); a wide char's second cell is ("", sgr)


class UnknownSequence(ValueError):
    """A frame held something other than cursor moves, colours, newlines and text."""


@lru_cache(maxsize=4096)
def _width(char: str) -> int:
    return get_character_cell_size(char)


def parse_frame(frame: str) -> dict[int, dict[int, Cell]]:
    """The cells `frame` paints: `{row: {column: (text, sgr)}}`, 0-based. Raises `UnknownSequence`."""
    painted: dict[int, dict[int, Cell]] = {}
    x = y = 0
    sgr = ""
    row = painted.setdefault(0, {})
    pos = 0
    for match in _TOKEN.finditer(frame):
        if match.start() > pos:
            x = _paint(row, x, frame[pos:match.start()], sgr)
        pos = match.end()
        if match.group(1) is not None:
            y, x = int(match.group(1)) - 1, int(match.group(2)) - 1
            row = painted.setdefault(y, {})
        elif match.group(3) is not None:
            params = match.group(3)
            if params in ("", "0"):
                sgr = ""
            elif params.startswith("0;"):
                sgr = params[2:]
            else:
                sgr = f"{sgr};{params}" if sgr else params
        elif match.group(0) == "\n":
            y, x = y + 1, 0
            row = painted.setdefault(y, {})
        else:
            raise UnknownSequence(repr(match.group(0)))
    if pos < len(frame):
        _paint(row, x, frame[pos:], sgr)
    return {y: cells for y, cells in painted.items() if cells}


def _paint(row: dict[int, Cell], x: int, text: str, sgr: str) -> int:
    for char in text:
        width = _width(char)
        if width == 0:  # a combining mark joins the cell before it
            if x > 0 and (x - 1) in row:
                before, style = row[x - 1]
                row[x - 1] = (before + char, style)
            continue
        row[x] = (char, sgr)
        if width == 2:
            row[x + 1] = ("", sgr)
        x += width
    return x


class TerminalMirror:
    """What the terminal shows; `frame(sequence)` turns textual's output into the changed cells only."""

    def __init__(self) -> None:
        self._rows: dict[int, dict[int, Cell]] = {}

    def forget(self) -> None:
        """The terminal's content is unknown (resized, cleared, resumed): the next frames write every cell."""
        self._rows.clear()

    def frame(self, sequence: str) -> str:
        """The bytes that bring the terminal from what it shows to what `sequence` would make it show."""
        try:
            painted = parse_frame(sequence)
        except UnknownSequence:
            self.forget()
            return sequence
        out: list[str] = []
        style = ""
        for y in sorted(painted):
            new = painted[y]
            old = self._rows.setdefault(y, {})
            changed = [x for x in sorted(new) if old.get(x) != new[x]]
            changed = _with_wide_neighbours(changed, old, new)
            for start, end in _runs(changed, new):
                out.append(f"\x1b[{y + 1};{start + 1}H")
                for x in range(start, end + 1):
                    text, sgr = new[x]
                    if not text:
                        continue  # the second half of a wide character, written with its first half
                    if sgr != style:
                        out.append(f"\x1b[0;{sgr}m" if sgr else _RESET)
                        style = sgr
                    out.append(text)
            old.update(new)
        if style:
            out.append(_RESET)
        return "".join(out)


def _with_wide_neighbours(changed: list[int], old: dict[int, Cell], new: dict[int, Cell]) -> list[int]:
    """Overwriting half of a wide character blanks its other half on the terminal: rewrite that one too."""
    more = set(changed)
    for x in changed:
        before = old.get(x)
        if before is not None and not before[0] and x - 1 in new:
            more.add(x - 1)
        after = old.get(x + 1)
        if after is not None and not after[0] and x + 1 in new:
            more.add(x + 1)
    return sorted(more) if len(more) != len(changed) else changed


def _runs(changed: list[int], new: dict[int, Cell]) -> list[tuple[int, int]]:
    """Column ranges (inclusive) to rewrite: the changed cells, joined across short gaps of painted
    cells, widened so that a wide character is always written whole."""
    runs: list[list[int]] = []
    for x in changed:
        if runs and x - runs[-1][1] <= MERGE_GAP + 1 and all(c in new for c in range(runs[-1][1] + 1, x)):
            runs[-1][1] = x
        else:
            runs.append([x, x])
    for run in runs:
        if not new[run[0]][0] and (run[0] - 1) in new:  # starts on a wide character's second half
            run[0] -= 1
        if run[1] + 1 in new and not new[run[1] + 1][0]:  # ends on a wide character's first half
            run[1] += 1
    return [(a, b) for a, b in runs]


class MirroredUpdate(RewrittenFrame):
    """A textual frame that, when written, goes through `mirror` (any failure: written unchanged)."""

    def __init__(self, update: object, mirror: TerminalMirror) -> None:
        super().__init__(update)
        self.mirror = mirror

    def rewrite(self, sequence: str) -> str:
        try:
            return self.mirror.frame(sequence)
        except Exception:  # noqa: BLE001 - never lose a frame to this optimisation
            self.mirror.forget()
            return sequence


def mirrored(renderable: object, mirror: Optional[TerminalMirror]) -> object:
    """`renderable` to write in place of the frame textual made (see `compat.FrameHook`): a compositor
    frame goes through `mirror`; anything else is written as it is, and the mirror forgets (it no
    longer knows the screen)."""
    if mirror is None or renderable is None:
        return renderable
    if is_frame(renderable):
        return MirroredUpdate(renderable, mirror)
    mirror.forget()
    return renderable
