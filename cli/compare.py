"""`trainmon compare`: several runs side by side, as a table of text (piped, `--table`, `--json`) or in the
monitor's compare view (a terminal). No torch."""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Optional

import click

from .common import fail, resolve_or_fail, terminal_width

LABEL_WIDTH = 14  # the row labels' column (`best val loss`)


def _runs(names: tuple[str, ...], last: Optional[int]) -> list:
    """The runs named (ids, prefixes, paths), then the newest `last` of the others, each once, in that order."""
    from trainmon.engine.record.paths import runs_root
    from trainmon.engine.record.rundir import list_runs

    runs = [resolve_or_fail(name, live_only=False) for name in names]
    if last is not None:
        if last < 1:
            fail(f"--last takes a count of runs ≥ 1, got {last}")
        named = {str(run.path) for run in runs}  # `RUN --last 1`: RUN and the newest other run
        newest = [run for run in list_runs() if str(run.path) not in named][-last:]
        if not newest and not runs:
            fail(f"no runs yet under {runs_root()} (train one: `trainmon`)")
        runs += newest
    seen, unique = set(), []
    for run in runs:  # an id and a path of one run: one directory (read_run resolves the path)
        if str(run.path) not in seen:
            seen.add(str(run.path))
            unique.append(run)
    if len(unique) == 1 and len(runs) > 1:
        fail(f"the same run was given twice ({unique[0].id}): compare needs two different runs")
    if len(unique) < 2:
        fail("compare needs two runs or more (ids, prefixes or paths; --last N for your newest N)")
    return unique


def render_table(runs: list, width: Optional[int]) -> None:
    """Print the table: a legend of the runs' short names, then the rows; runs that do not fit in `width`
    columns (None: a pipe, every run on one line) go on in a further block, the row labels repeated."""
    from rich.console import Console
    from rich.table import Table

    from trainmon.engine.record.compare import short_names, table_rows

    names = short_names([f.id for f in runs])
    rows = table_rows(runs)
    console = Console(width=width or 10_000, no_color=True, highlight=False, soft_wrap=False, record=True,
                      file=io.StringIO())
    if names != [f.id for f in runs]:
        for name, f in zip(names, runs):
            console.print(f"{name}  {f.id}  {f.run.path}", overflow="ignore", crop=False)
        console.print()
    cell = [max(len(name), *(len(r[1][i]) for r in rows)) for i, name in enumerate(names)]
    label = max(LABEL_WIDTH, *(len(r[0]) for r in rows))
    blocks, block, used = [], [], label
    for i in range(len(runs)):
        if block and width is not None and used + 2 + cell[i] > width:
            blocks.append(block)
            block, used = [], label
        block.append(i)
        used += 2 + cell[i]
    blocks.append(block)
    for n, block in enumerate(blocks):
        table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 2, 0, 0))
        table.add_column("", style="bold", no_wrap=True, min_width=label)
        for i in block:
            table.add_column(names[i], no_wrap=True, overflow="fold")
        for text, cells in rows:
            table.add_row(text, *(cells[i] for i in block))
        if n:
            console.print()
        console.print(table)
    click.echo("\n".join(line.rstrip() for line in console.export_text().splitlines()))


@click.command()
@click.argument("runs", nargs=-1)
@click.option("--last", type=int, metavar="N", help="Also compare your newest N runs.")
@click.option("--table", "as_table", is_flag=True, help="The table as text, even in a terminal.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (settings and figures per run), for scripts.")
def compare(runs: tuple[str, ...], last: Optional[int], as_table: bool, as_json: bool) -> None:
    """Compare runs: RUNS are ids, unique prefixes, ids' last parts or run-directory paths (`--last 3`: your
    newest three).

    In a terminal: the runs' training loss curves overlaid (validation loss per epoch as points), a legend
    and the table; live runs keep updating; at most 8 runs are overlaid, the newest (the table shows them all). Piped,
    or with --table: the table as text: the settings that differ between the runs, then epochs done,
    the final training loss, the final and best validation loss and metrics, elapsed time and status.
    """
    from trainmon.engine.record.compare import as_json as to_json
    from trainmon.engine.record.compare import read_figures

    if as_json and as_table:
        from .common import fail

        fail("--json and --table are two outputs: give one")
    chosen = _runs(runs, last)
    if as_json:
        click.echo(json.dumps(to_json([read_figures(r, curves=False) for r in chosen])))
        return
    in_browser = os.environ.get("TEXTUAL_DRIVER", "").endswith(":WebDriver")
    if as_table or not (in_browser or (sys.stdin.isatty() and sys.stdout.isatty())):
        render_table([read_figures(r, curves=False) for r in chosen], terminal_width())
        return
    from trainmon.tui.compare_app import CompareApp

    CompareApp([r.path for r in chosen]).run()
