"""`trainmon logs --output RUN`: the job's own output (its stdout and stderr as recorded in the run directory),
as the monitor's `o` shows it: `\\r` progress lines collapsed to their last state, ranks folded; `--raw` gives the
bytes as recorded. No torch."""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

import click

from trainmon.engine.core.terminal_lines import strip_escapes


def print_output(info: Any, follow: bool, rank: Optional[int], raw: bool) -> None:
    """Print run `info`'s recorded output; with `follow`, new lines until the run ends (a live run)."""
    from trainmon.engine.record.output_log import output_name, output_ranks, read_output
    from trainmon.engine.record.run_output import RunOutput
    from trainmon.engine.record.rundir import read_run

    from .common import fail

    ranks = output_ranks(info.path)
    if rank is not None and rank not in ranks:
        fail(f"run {info.id} has no output of rank {rank} (ranks with output: {', '.join(map(str, ranks))})")
    note = info.info.get("output") or {}
    if note and not note.get("captured"):
        click.echo(f"trainmon: the job's output was not recorded ({note.get('why')})", err=True)
    captured = not note or note.get("captured")
    whose = f"run {info.id}" + ("" if rank is None else f" (rank {rank})")
    if raw and not follow:
        data, _skipped = read_output(info.path, output_name(rank or 0))
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        if not data and captured:
            click.echo(f"trainmon: {whose} printed nothing", err=True)
        return
    colour = sys.stdout.isatty()
    output = RunOutput(info.path, tail_bytes=1 << 62, max_lines=1 << 62)  # all of it, not a screen's tail

    def echo(lines: list[str]) -> None:
        for line in lines if colour else strip_escapes(lines):
            click.echo(line)

    first = output.lines(rank)
    echo(first)
    if not first and not output.partial(rank) and captured:  # silence would read as a broken command
        live = follow and read_run(info.path).live
        click.echo(f"trainmon: {whose} " + ("has printed nothing yet; following (Ctrl+C ends)" if live
                                            else "printed nothing"), err=True)
    try:
        while follow and read_run(info.path).live:
            time.sleep(0.5)
            new = output.poll()
            if rank is not None or len(output.ranks) == 1:
                echo(new.get(rank or 0, []))
            else:
                echo([f"rank {r}: {line}" for r, lines in sorted(new.items()) for line in lines])
        if follow:
            for r, lines in sorted(output.poll().items()):
                echo(lines if rank is not None or len(output.ranks) == 1 else [f"rank {r}: {x}" for x in lines])
        partial = output.partial(rank)
        if partial:  # the last line had no newline (a bar as it was left)
            echo([partial])
    finally:
        output.close()
