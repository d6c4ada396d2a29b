"""Human-readable `trainmon plan`: a Rich table per epoch, totals, and what the shortcut would get wrong;
over several ranks, the per-rank counts and the sampler's padding too."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from trainmon.engine.core.distributed_plan import DistributedRunPlan
from trainmon.engine.core.format import count
from trainmon.engine.core.plan import EpochPlan, RunPlan


def _plural(n: int, word: str, plural: str = "") -> str:
    """`1 sample`, `2 samples`, `0 samples`; `plural` where adding an s is wrong (`indices`)."""
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


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


def _epoch_labels(segments) -> list[str]:
    """`3` for one epoch, `3–100` for a run of identical epochs."""
    return [count(e.epoch) if e.count == 1 else f"{count(e.epoch)}–{count(e.last_epoch)}" for e in segments]


def _print_table(console: Console, table: Table, labels: list[str]) -> Console:
    """Print `table`, whose first column holds `labels`, never cutting an epoch range short nor wrapping a
    header (`eff.` over `batch`); returns the console to print on after it (a wider one when a pipe or a
    file needed it)."""
    table.columns[0].min_width = max(map(len, labels), default=0)
    for column in table.columns:
        column.min_width = max(column.min_width or 0, len(str(column.header)))
    needed = console.measure(table, options=console.options.update_width(10**6)).maximum
    if needed > console.width and not console.is_terminal:  # a pipe or a file: as wide as the table is
        console = Console(highlight=False, width=needed, file=console.file)
    console.print(table)
    return console


def _say(console: Console, text: str) -> None:
    """A line of text; into a pipe or a file it stays one line (the reader's pager wraps, not us)."""
    console.print(text, soft_wrap=not console.is_terminal)


def effective_batch_text(sizes: list[int]) -> str:
    """`32`, or `32–256` when the batch-size schedule changes it: the smallest to the largest of `sizes`."""
    if not sizes:
        return "0"
    low, high = min(sizes), max(sizes)
    return count(low) if low == high else f"{count(low)}–{count(high)}"


def render_plan(plan: RunPlan, console: Console | None = None) -> None:
    """Print `plan` as a table, one row per run of identical epochs (`3–100`); unknown counts show as `?`."""
    console = console or Console(highlight=False)
    m = plan.samples_per_epoch
    table = Table(title=f"trainmon plan — {'unknown samples' if m is None else _plural(m, 'sample')} per epoch"
                        + (", drop_last" if plan.drop_last else ""))
    labels = _epoch_labels(plan.segments)
    for header in ("epoch", "batch", "accum", "iters", "last", "windows", "steps", "samples", "eff. batch"):
        table.add_column(header, justify="right")
    for epochs, e in zip(labels, plan.segments):  # identical epochs share a row: the table does not grow with E
        table.add_row(epochs, count(e.batch_size), count(e.accum), count(e.iterations),
                      count(e.last_batch_size), _windows(e), count(e.optimizer_steps), count(e.samples),
                      count(e.effective_batch_size))
    console = _print_table(console, table, labels)
    _say(console, "iters = iterations (batches), last = samples in the last batch, steps = optimizer steps,"
                  " windows = micro-batches per accumulation window")
    _say(console,
         f"total iterations {count(plan.total_iterations)}   total optimizer steps {count(plan.total_optimizer_steps)}"
         f"   total samples {count(plan.total_samples)}   effective batch size "
         f"{effective_batch_text([e.effective_batch_size for e in plan.segments])}"
         )
    if m == 0:
        _say(console, "note: no samples: nothing would train.")
    if plan.segments and m:
        first = plan.segments[0]
        b = first.batch_size
        if m % b and not plan.drop_last:
            _say(console,
                f"note: {m} // {b} = {m // b} undercounts; the loader yields {_plural(first.iterations, 'iteration')},"
                f" the last holding {_plural(first.last_batch_size, 'sample')}."
            )
        if first.last_window_size and first.last_window_size != first.accum:
            _say(console,
                f"note: the last window of each epoch holds {first.last_window_size} of "
                f"{first.accum} micro-batches; it still gets its own optimizer step."
            )


def render_distributed_plan(plan: DistributedRunPlan, console: Console | None = None) -> None:
    """Print a plan over several ranks: a `per rank` table (what each rank's loader yields, the same on
    every rank), the sampler's padding or dropped tail, then an `over all ranks` table of updates and
    real samples seen, padding counted apart."""
    console = console or Console(highlight=False)
    m, w = plan.samples_per_epoch, plan.world_size
    labels = _epoch_labels(plan.segments)
    ranks = Table(title=f"trainmon plan — {_plural(m, 'sample')} per epoch over {w} ranks"
                        + (", drop_last" if plan.drop_last else "") + ": per rank")
    for header in ("epoch", "batch", "accum", "iters", "last", "windows", "steps", "samples"):
        ranks.add_column(header, justify="right")
    for epochs, e in zip(labels, plan.segments):
        r = e.rank
        ranks.add_row(epochs, count(e.batch_size), count(e.accum), count(r.iterations), count(r.last_batch_size),
                      _windows(r), count(e.optimizer_steps), count(r.samples))
    console = _print_table(console, ranks, labels)
    _say(console, "per rank, the same on every rank: iters = iterations (batches), last = samples in the last batch,"
                  " windows = micro-batches per accumulation window, steps = optimizer steps (the ranks step"
                  " together), samples = what the rank's loader yields, padding included")
    per_rank = plan.samples_per_rank
    if plan.drop_last:
        _say(console, f"per rank: {_plural(per_rank, 'sample')} = floor({m} / {w}); padded: none (drop_last: the "
                      f"sampler drops the last {_plural(m - per_rank * w, 'sample')} instead)")
    else:
        _say(console, f"per rank: {_plural(per_rank, 'sample')} = ceil({m} / {w}); padded: {plan.padded} in all (the"
                      f" sampler repeats the first {_plural(plan.padded, 'index', 'indices')} so every rank gets"
                      f" {per_rank})")
    world = Table(title=f"over all {w} ranks")
    for header in ("epoch", "steps", "samples seen", "padded", "dropped", "eff. batch"):
        world.add_column(header, justify="right")
    for epochs, e in zip(labels, plan.segments):
        world.add_row(epochs, count(e.optimizer_steps), count(e.samples_seen), count(e.padded), count(e.dropped),
                      count(e.effective_batch_size))
    console = _print_table(console, world, labels)
    _say(console, f"samples seen = real samples trained on (padded duplicates counted apart), dropped = real samples"
                  f" no rank sees (drop_last), eff. batch = batch × accum × {w} ranks")
    _say(console,
        f"total iterations per rank {count(plan.total_iterations_per_rank)}   total optimizer steps "
        f"{count(plan.total_optimizer_steps)}   total samples seen {count(plan.total_samples_seen)}"
        + (f" (+ {count(plan.total_padded)} padded)" if plan.total_padded else "")
        + f"   effective batch size {effective_batch_text([e.effective_batch_size for e in plan.segments])}"
    )
    if m == 0:
        _say(console, "note: no samples: nothing would train.")
    if plan.segments and m:
        first = plan.segments[0]
        r, b = first.rank, first.batch_size
        if per_rank % b and not plan.drop_last:
            _say(console,
                f"note: {per_rank} // {b} = {per_rank // b} undercounts; each rank's loader yields "
                f"{_plural(r.iterations, 'iteration')}, the last holding {_plural(r.last_batch_size, 'sample')}."
            )
        if first.dropped:
            _say(console,
                f"note: {_plural(first.dropped, 'real sample')} per epoch no rank sees (drop_last): "
                f"{m - per_rank * w} left by the sampler, {per_rank - r.samples} by each of the {w} ranks' loaders."
            )
        if r.last_window_size and r.last_window_size != r.accum:
            _say(console,
                f"note: the last window of each epoch holds {r.last_window_size} of "
                f"{r.accum} micro-batches on every rank; it still gets its own optimizer step."
            )
