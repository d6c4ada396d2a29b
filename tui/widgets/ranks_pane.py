"""Every rank of a distributed run in view, so a straggler or an uneven memory use stands out.

Shown in the Devices pane's place when `Snapshot.world_size > 1` (the Devices pane shows rank 0's
device only; this pane has every rank's memory). Bounded by the screen: one row per rank while the
rows fit the pane's height, otherwise min / median / max over all ranks plus the rows of the ranks
that stand out (the hung first, rank 0, the slow ones, the memory extremes) — never a scrolling list of 64
rows. Hung ranks (`RankFigures.hung`, rank 0's watch: engine/core/rank_health.py) are named first, in red.
What stands out is said in words on a line of its own, not by colour alone.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from rich.markup import escape

from trainmon.engine.core.format import SCREEN, count, metric, mib, rate
from trainmon.engine.core.messages import RankFigures, Snapshot

from .quiet import QuietStatic, visual_lines

SLOW = 0.9  # a rank is slow when its it/s (or its iteration count) is under 90% of the others' median
UNEVEN = 1.2  # memory is uneven when the most a rank holds is over 1.2 × the least
MARK = "◂"  # ends a row that a note below the table names
MINUS = "−"


def _median_of_others(values: dict[int, float], rank: int) -> Optional[float]:
    others = [v for r, v in values.items() if r != rank]
    return statistics.median(others) if others else None


@dataclass(frozen=True)
class RankReading:
    """What stands out among the ranks: the leader's iteration, the slow ranks (slowest first), the memory
    extremes when memory is uneven (`(most, least)` ranks) and the memory ratio."""

    leader_iteration: int
    slow: tuple[int, ...] = ()
    slow_by: dict[int, float] = field(default_factory=dict)  # rank → fraction below the others' median
    memory: Optional[tuple[int, int]] = None
    memory_ratio: Optional[float] = None

    def behind(self, r: RankFigures) -> int:
        """Completed iterations this rank is behind the leader (0 for the leader)."""
        return max(0, self.leader_iteration - r.global_iteration)


def read_ranks(ranks: Sequence[RankFigures]) -> RankReading:
    """Find the straggler(s) and uneven memory in `ranks` (one `RankFigures` per rank).

    A rank is slow when its it/s is under `SLOW` × the median it/s of the other ranks; where rates are
    unknown, when its completed iterations are under `SLOW` × the others' median count (it has run
    10% slower on average). Memory is uneven when max > `UNEVEN` × min over the ranks that report it.
    """
    leader = max((r.global_iteration for r in ranks), default=0)
    rates = {r.rank: r.iterations_per_second for r in ranks if r.iterations_per_second is not None}
    iterations = {r.rank: float(r.global_iteration) for r in ranks}
    slow_by: dict[int, float] = {}
    for r in ranks:
        for values in (rates, iterations):
            if r.rank not in values:
                continue
            median = _median_of_others(values, r.rank)
            if median and values[r.rank] < SLOW * median:
                slow_by[r.rank] = max(slow_by.get(r.rank, 0.0), 1 - values[r.rank] / median)
    # slowest first: lowest rate, then furthest behind
    slow = tuple(sorted(slow_by, key=lambda k: (rates.get(k, float("inf")), iterations[k])))
    memory = {r.rank: r.memory_mib for r in ranks if r.memory_mib is not None}
    extremes, ratio = None, None
    if len(memory) > 1:
        most, least = max(memory, key=memory.__getitem__), min(memory, key=memory.__getitem__)
        if memory[most] > UNEVEN * memory[least]:
            extremes = (most, least)
            ratio = memory[most] / memory[least] if memory[least] > 0 else None
    return RankReading(leader, slow, slow_by, extremes, ratio)


def _label(r: RankFigures, hosts: bool) -> str:
    """`3`, or `3 node-b` when the run spans several hosts (host names cut to 10 cells)."""
    if not hosts or not r.host:
        return str(r.rank)
    host = r.host if len(r.host) <= 10 else r.host[:9] + "…"
    return f"{r.rank} {host}"


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[RankFigures], str]
    left: bool = False


def _table(rows: Sequence[RankFigures], columns: list[Column], marks: dict[int, str], styles: dict[int, str],
           ) -> list[str]:
    """Header and one line per rank, columns as wide as their widest cell, one space apart."""
    cells = [[c.cell(r) for c in columns] for r in rows]
    widths = [max([len(c.header)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]

    def join(values: Sequence[str]) -> str:
        return " ".join(v.ljust(w) if c.left else v.rjust(w) for v, w, c in zip(values, widths, columns))

    lines = [f"[dim]{escape(join([c.header for c in columns]))}[/]"]
    for r, line in zip(rows, cells):
        text = escape(join(line)) + (f" {marks[r.rank]}" if r.rank in marks else "")
        style = styles.get(r.rank)
        lines.append(f"[{style}]{text}[/]" if style else text)
    return lines


def _table_width(rows: Sequence[RankFigures], columns: list[Column], marked: bool) -> int:
    widths = [max([len(c.header)] + [len(c.cell(r)) for r in rows]) for c in columns]
    return sum(widths) + len(widths) - 1 + (2 if marked else 0)


def _summary(ranks: Sequence[RankFigures]) -> list[str]:
    """min / median / max of it/s, iteration and memory over all ranks (the figures that are known)."""
    stats = [("it/s", [r.iterations_per_second for r in ranks], lambda v: rate(v, SCREEN)),
             ("iter", [r.global_iteration for r in ranks], lambda v: count(round(v))),
             ("MiB", [r.memory_mib for r in ranks], lambda v: mib(v, SCREEN))]
    table = [("ranks", "min", "median", "max")]  # a word first: Textual drops a line's leading spaces
    for name, values, fmt in stats:
        known = [v for v in values if v is not None]
        if known:
            table.append((name, fmt(min(known)), fmt(statistics.median(known)), fmt(max(known))))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = []
    for i, row in enumerate(table):
        text = " ".join([row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])])
        lines.append(f"[dim]{text}[/]" if i == 0 else text)
    return lines


def rank_lines(ranks: Sequence[RankFigures], width: int, height: int) -> list[str]:
    """The pane's lines (Rich markup) for `ranks` in `width` × `height` cells (`height` ≤ 0: not laid out yet,
    then up to 8 ranks get a row each).

    Columns: rank (and host when there are several), iteration, how far behind the leader, it/s, last
    loss, memory in MiB. Where they do not fit `width`, the loss column goes first, then `behind` (the
    notes still say it). Rows: every rank when they fit `height` with the notes, else a summary.
    """
    ranks = sorted(ranks, key=lambda r: r.rank)
    reading = read_ranks(ranks)
    hosts = len({r.host for r in ranks}) > 1
    notes: list[str] = []
    marks: dict[int, str] = {}
    styles: dict[int, str] = {}
    hung = [r.rank for r in ranks if r.hung]  # rank 0's watch (engine/core/rank_health.py): first, in red
    if hung:
        notes.append(_note(width, f"{MARK} hung: rank {hung[0]}", *(f"rank {r}" for r in hung[1:4]),
                           f"+{len(hung) - 4} more" if len(hung) > 4 else "", "the others wait for it"))
        for r in hung:
            marks[r], styles[r] = MARK, "b red"
    if reading.slow:
        worst = reading.slow[0]
        behind = reading.behind(next(r for r in ranks if r.rank == worst))
        notes.append(_note(width, f"{MARK} slowest: rank {worst}", f"{reading.slow_by[worst]:.0%} slower",
                           f"{MINUS}{behind} it" if behind else "",
                           f"+{len(reading.slow) - 1} slow" if len(reading.slow) > 1 else ""))
        styles.setdefault(worst, "b yellow")
        for r in reading.slow:
            marks[r] = MARK
            styles.setdefault(r, "yellow")
    if reading.memory is not None:
        most, least = reading.memory
        ratio = f"{reading.memory_ratio:.2f}×" if reading.memory_ratio else "more than"
        notes.append(_note(width, f"{MARK} uneven memory: rank {most}", f"{ratio} rank {least}", sep=" = "))
        for r in (most, least):
            marks[r] = MARK
            styles.setdefault(r, "magenta")
    if not notes:
        notes.append("[dim]ranks in step · memory even[/]")

    sources = {r.memory_source for r in ranks if r.memory_mib is not None}
    mixed = len(sources) > 1

    def memory(r: RankFigures) -> str:
        star = "*" if mixed and r.memory_source == "host RSS" else ""
        return mib(r.memory_mib, SCREEN) + star

    columns = [
        Column("rank", lambda r: _label(r, hosts), left=True),
        Column("iter", lambda r: count(r.global_iteration)),
        Column("behind", lambda r: f"{MINUS}{reading.behind(r)} it" if reading.behind(r) else ""),
        Column("it/s", lambda r: rate(r.iterations_per_second, SCREEN)),
        Column("loss", lambda r: metric(r.loss, SCREEN)),
        Column("MiB", memory),
    ]
    note_rows = sum(visual_lines(n, width) for n in notes) if width > 0 else len(notes)
    full = 1 + len(ranks) + note_rows <= height if height > 0 else len(ranks) <= 8
    if full:
        rows: Sequence[RankFigures] = ranks
        head: list[str] = []
    else:  # the ranks the notes name (slowest first), then rank 0 (it owns the run)
        by_rank = {r.rank: r for r in ranks}
        wanted = dict.fromkeys([*hung[:3], *reading.slow[:3], *(reading.memory or ()), ranks[0].rank])
        rows = [by_rank[k] for k in wanted]
        head = _summary(ranks)
    for name in ("loss", "behind"):
        if width <= 0 or _table_width(rows, columns, bool(marks)) <= width:
            break
        columns = [c for c in columns if c.header != name]
    table = _table(rows, columns, marks, styles)
    if height <= 0 or len(head) + len(table) + note_rows <= height:
        return head + table + notes
    # too few rows: the summary goes first, then the table's last rows; the notes stay
    return (table[:max(0, height - note_rows)] + notes)[:height]


def _note(width: int, first: str, *parts: str, sep: str = ", ") -> str:
    """`first` in bold, then as many of `parts` as fit `width` cells (all of them when `width` ≤ 0)."""
    text = first
    for part in parts:
        if part and (width <= 0 or len(text) + len(sep) + len(part) <= width):
            text += sep + part
    return f"[b]{escape(first)}[/]{escape(text[len(first):])}"


def memory_subtitle(ranks: Sequence[RankFigures]) -> str:
    """What the MiB column measures: `MiB: torch allocated`; mixed sources mark host RSS cells with `*`."""
    sources = list(dict.fromkeys(r.memory_source for r in ranks if r.memory_mib is not None and r.memory_source))
    if not sources:
        return ""
    if len(sources) == 1:
        return f"MiB: {sources[0]}"
    return "MiB: " + " · ".join(f"{s}*" if s == "host RSS" else s for s in sources)


class RanksPane(QuietStatic):
    """One row per rank of a distributed run (a summary when they do not fit), the straggler and uneven
    memory named in words."""

    _ranks: tuple[RankFigures, ...] = ()

    def on_mount(self) -> None:
        self.border_title = "Ranks"

    def on_resize(self) -> None:
        self._draw()  # the rows that fit depend on the pane's size

    def show(self, s: Snapshot) -> None:
        hosts = len({r.host for r in s.ranks if r.host})
        title = f"Ranks · {s.world_size}" + (f" on {hosts} hosts" if hosts > 1 else "")
        if self.border_title != title:  # a title change repaints the pane: only when it changes
            self.border_title = title
        subtitle = memory_subtitle(s.ranks)
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
        self._ranks = s.ranks
        self._draw()

    def _draw(self) -> None:
        if not self._ranks:
            self.show_text("[dim]waiting for the ranks' figures…[/]")
            return
        size = self.content_size
        self.show_text("\n".join(rank_lines(self._ranks, size.width, size.height)))
