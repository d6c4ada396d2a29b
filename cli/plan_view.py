"""Human-readable `trainmon plan`: a Rich table per epoch, totals, and what the shortcut would get wrong."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from trainmon.engine.arithmetic import RunPlan


def _windows(sizes: list[int] | None) -> str:
    if sizes is None:
        return "?"
    if len(sizes) > 4:
        full = sizes[0]
        count = sum(1 for s in sizes if s == full)
        rest = [s for s in sizes if s != full]
        return f"{count}×{full}" + (f" + {rest[0]}" if rest else "")
    return " ".join(str(s) for s in sizes)


def render_plan(plan: RunPlan, console: Console | None = None) -> None:
    """Print `plan` as a table; unknown counts show as `?`."""
    console = console or Console(highlight=False)
    m = plan.samples_per_epoch
    table = Table(title=f"trainmon plan — {m if m is not None else 'unknown'} samples per epoch"
                        + (", drop_last" if plan.drop_last else ""))
    for header in ("epoch", "batch", "accum", "iters", "last", "windows", "steps", "samples", "eff. batch"):
        table.add_column(header, justify="right")
    q = lambda v: "?" if v is None else str(v)  # noqa: E731
    for e in plan.epochs:
        table.add_row(str(e.epoch), str(e.batch_size), str(e.accum), q(e.iterations), q(e.last_batch_size),
                      _windows(e.window_sizes), q(e.optimizer_steps), q(e.samples), str(e.effective_batch_size))
    console.print(table)
    console.print("iters = iterations (batches), last = samples in the last batch, steps = optimizer steps,"
                  " windows = micro-batches per accumulation window")
    console.print(
        f"total iterations {q(plan.total_iterations)}   total optimizer steps {q(plan.total_optimizer_steps)}   "
        f"total samples {q(plan.total_samples)}   effective batch size {plan.effective_batch_size}"
    )
    if plan.epochs and m:
        first = plan.epochs[0]
        b = first.batch_size
        if m % b and not plan.drop_last:
            console.print(
                f"note: {m} // {b} = {m // b} undercounts; the loader yields {first.iterations} iterations, "
                f"the last holding {first.last_batch_size} samples."
            )
        if first.window_sizes and first.window_sizes[-1] != first.accum:
            console.print(
                f"note: the last window of each epoch holds {first.window_sizes[-1]} of {first.accum} micro-batches;"
                " it still gets its own optimizer step."
            )
