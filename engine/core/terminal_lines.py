"""A job's raw output turned into the lines a terminal would have left on screen. No torch, no textual.

A progress bar (tqdm, a `\\r`-rewritten counter) writes hundreds of versions of one line; a terminal shows
the last. `LineCollapser` does the same with the text it is fed in chunks of any size: `\\n` ends a line,
`\\r\\n` too, a lone `\\r` returns to column 0 and what follows overwrites the line cell by cell, `\\b` steps
back one cell, `ESC[K` / `ESC[0K` erase to the end and `ESC[2K` the whole line. Colour codes (SGR,
`ESC[...m`) are kept for the viewer to render; other escape sequences (cursor moves, titles) are dropped.
`fold_ranks` merges what the ranks of a torchrun run printed: the same line from several ranks is one.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Optional, Sequence

_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_SPECIAL = re.compile(r"[\r\b\x1b]")
_UNFINISHED = re.compile(r"\x1b(?:\[[0-?]*[ -/]*)?$")  # an escape sequence cut by the end of a chunk
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # \t (\x09) is kept; \n never reaches here
MAX_LINE = 10_000  # cells; a longer line (a runaway bar without \n) is cut there


class LineCollapser:
    """Feed text with `feed()`; it returns the lines that ended. `partial` is the line being written
    (a progress bar's current state), `''` when the last chunk ended in a newline."""

    def __init__(self) -> None:
        self._cells: list[str] = []  # one visible character per cell, an SGR prefix glued to its char
        self._col = 0
        self._sgr = ""  # colour codes waiting for the next character
        self._pending_cr = False  # a \r ended the last chunk: \n next makes it \r\n, not an overwrite
        self._held = ""  # the start of an escape sequence the next chunk finishes

    @property
    def partial(self) -> str:
        return "".join(self._cells) + self._sgr

    def feed(self, text: str) -> list[str]:
        """The lines `text` ended, in order, without their newline."""
        done: list[str] = []
        text, self._held = self._held + text, ""
        cut = _UNFINISHED.search(text[-32:])
        if cut is not None:
            self._held = text[len(text) - 32 + cut.start():] if len(text) > 32 else text[cut.start():]
            text = text[:len(text) - len(self._held)]
        pieces = text.split("\n")
        for index, piece in enumerate(pieces):
            if index:
                self._pending_cr = False
                done.append(self.partial)
                self._cells, self._col, self._sgr = [], 0, ""
            if piece:
                self._write(piece)
        return done

    def flush(self) -> list[str]:
        """The last line even without its newline (the end of a file): `[partial]` or `[]`."""
        line = self.partial
        self._cells, self._col, self._sgr, self._held = [], 0, "", ""
        return [line] if line else []

    def _write(self, piece: str) -> None:
        if self._pending_cr:
            self._pending_cr = False
            self._col = 0
        if piece.endswith("\r"):  # maybe half of a \r\n split between two chunks
            piece = piece[:-1]
            self._pending_cr = True
        if not _SPECIAL.search(piece) and self._col == len(self._cells) and not self._sgr:
            piece = _CONTROL.sub("", piece)  # the common case: plain text appended
            room = MAX_LINE - len(self._cells)
            self._cells.extend(piece[:room])
            self._col = len(self._cells)
            return
        pos = 0
        for match in _SPECIAL.finditer(piece):
            self._put(piece[pos:match.start()])
            char = match.group()
            pos = match.end()
            if char == "\r":
                self._col = 0
            elif char == "\b":
                self._col = max(0, self._col - 1)
            else:
                escape = _ESCAPE.match(piece, match.start())
                if escape is None:
                    continue  # a lone ESC: dropped
                pos = escape.end()
                self._escape(escape.group())
        self._put(piece[pos:])

    def _put(self, text: str) -> None:
        for char in _CONTROL.sub("", text):
            if self._col >= MAX_LINE:
                return
            cell = self._sgr + char
            self._sgr = ""
            if self._col > len(self._cells):  # past an erased end: the cells between are blank
                self._cells.extend(" " * (self._col - len(self._cells)))
            if self._col < len(self._cells):
                self._cells[self._col] = cell
            else:
                self._cells.append(cell)
            self._col += 1

    def _escape(self, code: str) -> None:
        if code.startswith("\x1b[") and code.endswith("m"):
            self._sgr += code
        elif code in ("\x1b[K", "\x1b[0K"):
            del self._cells[self._col:]
        elif code == "\x1b[2K":
            self._cells = []


def collapse(text: str) -> list[str]:
    """Every line `text` leaves on a terminal, the unfinished last one included."""
    collapser = LineCollapser()
    return collapser.feed(text) + collapser.flush()


def _rank_label(ranks: Sequence[int]) -> str:
    """`rank 3`, `ranks 1–7` (a consecutive run), `ranks 0, 2, 5`."""
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if list(ranks) == list(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}–{ranks[-1]}"
    return "ranks " + ", ".join(str(r) for r in ranks)


LOOKAHEAD = 64  # lines searched ahead for where two ranks' outputs meet again


def _find(texts: Sequence[str], text: str, start: int) -> Optional[int]:
    """How far after `start` `text` comes in `texts` (within `LOOKAHEAD`), or `None`."""
    try:
        return texts.index(text, start, start + LOOKAHEAD) - start
    except ValueError:
        return None


def _align(merged: list[tuple[str, list[int]]], theirs: Sequence[str], rank: int) -> list[tuple[str, list[int]]]:
    """`merged` with rank `rank`'s lines joined in: a line both have (in order) gets the rank added; where
    they differ, whichever side meets the other again sooner goes first, else one line of each."""
    texts = [text for text, _ in merged]
    out: list[tuple[str, list[int]]] = []
    i = j = 0
    while i < len(texts) and j < len(theirs):
        if texts[i] == theirs[j]:
            out.append((texts[i], merged[i][1] + [rank]))
            i, j = i + 1, j + 1
            continue
        ahead_mine, ahead_theirs = _find(texts, theirs[j], i + 1), _find(theirs, texts[i], j + 1)
        if ahead_mine is not None and (ahead_theirs is None or ahead_mine <= ahead_theirs):
            out += merged[i:i + 1 + ahead_mine]  # lines only the ranks so far printed, up to where they meet
            i += 1 + ahead_mine
        elif ahead_theirs is not None:
            out += [(text, [rank]) for text in theirs[j:j + 1 + ahead_theirs]]
            j += 1 + ahead_theirs
        else:  # a line of its own: after the other ranks' lines at this place (one each: `x0`, `x1`, then `x2`)
            upto, seen = i + 1, set(merged[i][1])
            while upto < len(texts) and seen.isdisjoint(merged[upto][1]):
                seen.update(merged[upto][1])
                upto += 1
            out += merged[i:upto] + [(theirs[j], [rank])]
            i, j = upto, j + 1
    return out + merged[i:] + [(text, [rank]) for text in theirs[j:]]


def fold_ranks(lines: Mapping[int, Sequence[str]]) -> list[str]:
    """One list from each rank's lines, in order: each rank's lines are aligned with those merged so far
    (equal lines in order meet; `LOOKAHEAD` lines are searched where they differ, so it stays linear), the
    same line that several ranks printed is one line, `ranks 1–7: text`; a line of one rank says
    `rank 3: text`. A single rank's lines come back as they are."""
    if len(lines) <= 1:
        return [line for rank_lines in lines.values() for line in rank_lines]
    ranks = sorted(lines)
    merged: list[tuple[str, list[int]]] = [(text, [ranks[0]]) for text in lines[ranks[0]]]
    for rank in ranks[1:]:
        merged = _align(merged, list(lines[rank]), rank)
    return [f"{_rank_label(who)}: {text}" for text, who in merged]


def strip_escapes(lines: Iterable[str]) -> list[str]:
    """The lines without escape codes (plain text for `logs --output` off a terminal)."""
    return [_ESCAPE.sub("", line) for line in lines]
