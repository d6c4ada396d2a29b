"""Human-readable `trainmon plan`: a Rich table per epoch, totals, and what the shortcut would get wrong."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from trainmon.engine.arithmetic import EpochPlan, RunPlan
from trainmon.engine.numbers import count


def _plural(n: int, word: str) -> str:
    """`1 sample`, `2 samples`, `0 samples`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _windows(e: EpochPlan) -> str:
    """The epoch's windows in micro-batches: `4 4 3` for up to four, else `250000×4 + 3`; `?` when unknown."""
    full, last, k = e.full_windows, e.last_window_size, e.accum
    if full is None or last is None:
        return "?"
    sizes_count = full + (1 if last and last != k else 0)
    if sizes_count == 0:
        return "—"
    if sizes_count <= 4:
        return " ".join([str(k)] * full + ([str(last)] if last != k else []))
    return f"{full}×{k}" + (f" + {last}" if last != k else "")


def render_plan(plan: RunPlan, console: Console | None = None) -> None:
    """Print `plan` as a table, one row per run of identical epochs (`3–100`); unknown counts show as `?`."""
    console = console or Console(highlight=False)
    m = plan.samples_per_epoch
    table = Table(title=f"trainmon plan — {'unknown samples' if m is None else _plural(m, 'sample')} per epoch"
                        + (", drop_last" if plan.drop_last else ""))
    labels = [count(e.epoch) if e.count == 1 else f"{count(e.epoch)}–{count(e.last_epoch)}" for e in plan.segments]
    for header in ("epoch", "batch", "accum", "iters", "last", "windows", "steps", "samples", "eff. batch"):
        table.add_column(header, justify="right")
    table.columns[0].min_width = max(map(len, labels), default=0)  # never cut an epoch range short
    for epochs, e in zip(labels, plan.segments):  # identical epochs share a row: the table does not grow with E
        table.add_row(epochs, count(e.batch_size), count(e.accum), count(e.iterations),
                      count(e.last_batch_size), _windows(e), count(e.optimizer_steps), count(e.samples),
                      count(e.effective_batch_size))
    extra = table.columns[0].min_width - len("epoch")  # a long epoch range widens the table by that much
    if extra > 0 and not console.is_terminal:  # a pipe or a file: never cut a number short
        console = Console(highlight=False, width=console.width + extra + 2, file=console.file)
    console.print(table)
    console.print("iters = iterations (batches), last = samples in the last batch, steps = optimizer steps,"
                  " windows = micro-batches per accumulation window")
    console.print(
        f"total iterations {count(plan.total_iterations)}   total optimizer steps {count(plan.total_optimizer_steps)}"
        f"   total samples {count(plan.total_samples)}   effective batch size {count(plan.effective_batch_size)}"
    )
    if m == 0:
        console.print("note: no samples: nothing would train.")
    if plan.segments and m:
        first = plan.segments[0]
        b = first.batch_size
        if m % b and not plan.drop_last:
            console.print(
                f"note: {m} // {b} = {m // b} undercounts; the loader yields {_plural(first.iterations, 'iteration')},"
                f" the last holding {_plural(first.last_batch_size, 'sample')}."
            )
        if first.last_window_size and first.last_window_size != first.accum:
            console.print(
                f"note: the last window of each epoch holds {first.last_window_size} of "
                f"{first.accum} micro-batches; it still gets its own optimizer step."
            )
