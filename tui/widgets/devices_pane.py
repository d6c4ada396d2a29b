"""Device memory and load: GPU figures when telemetry has them, host memory always."""

from __future__ import annotations

from itertools import product
from typing import Any, Optional

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline

from trainmon.engine.core.format import SCREEN, fixed, mib, percent

from .memory_spark import MemorySpark
from .quiet import FlowStatic, QuietStatic, flow

BAR = 12  # cells of the GPU memory bar


def _mib(value: Any) -> str:
    """`7,310 MiB`, `--` when unknown."""
    return mib(value, SCREEN, unit=True)


def _of(used: Any, total: Any) -> str:
    """`74,250 of 81,559 MiB`; `-- of 81,559 MiB`; the unit on the used figure when the total is unknown."""
    if total is None:
        return _mib(used)
    return f"{mib(used, SCREEN)} of {_mib(total)}"


# which lines go first when the pane is short (80×24 with pending changes): the higher, the sooner
KEEP_ENDED, KEEP_HOST, KEEP_MEMORY, KEEP_GPU, KEEP_REASON, KEEP_TORCH, KEEP_RAM = range(7)


def device_lines(sample: Any, ended: bool = False) -> tuple[list[tuple[int, list[list[str]]]], bool]:
    """`(lines, warn)`: each line `(drop order, alternatives)`, an alternative a list of groups (a label
    with its value, never split), the fullest first; `warn` when a GPU's memory is over 90% full.
    `ended`: the last reading of an engine that exited, without load figures or memory bar."""
    lines: list[tuple[int, list[list[str]]]] = []
    warn = False
    if ended:
        lines.append((KEEP_ENDED, [["[bold]run ended[/]", "[dim]figures as last read[/]"]]))
    if not sample.gpus:
        reason = sample.nvml_reason or "no NVIDIA GPU (NVML unavailable)"
        head, _, why = reason.partition(": ")
        full = [f"[dim]{head}{':' if why else ''}[/]"] + ([f"[dim]{why}[/]"] if why else [])
        lines.append((KEEP_REASON, [full, [f"[dim]{head}[/]"]]))
    for g in sample.gpus:
        used, total = g.memory_used_mib, g.memory_total_mib
        frac = (used / total) if used is not None and total else None
        warn = warn or (frac is not None and frac > 0.9)
        style = "bold red" if frac is not None and frac > 0.9 else "green"
        load = [] if ended else [f"util {percent(g.utilization_percent, SCREEN)}",
                                 fixed(g.temperature_c, 0, SCREEN, "°C")]
        named = f"GPU{g.index} {g.name or ''}".rstrip()
        lines.append((KEEP_GPU, [[named] + load, [f"GPU{g.index}"] + load]))
        figures = f"NVML used {_of(used, total)}"
        if frac is not None and not ended:
            filled = int(round(frac * BAR))
            bar = f"memory [{style}]{'█' * filled}[/][dim]{'░' * (BAR - filled)}[/] {percent(frac * 100, SCREEN)}"
            lines.append((KEEP_MEMORY, [[bar, figures], [f"memory {percent(frac * 100, SCREEN)}", figures]]))
        else:
            lines.append((KEEP_MEMORY, [[f"GPU memory: {figures}"]]))
        lines.append((KEEP_TORCH, [[f"torch reserved {_mib(g.torch_reserved_mib)}",
                                    f"torch allocated {_mib(g.torch_allocated_mib)}"]]))
    h = sample.host
    cpu = [] if ended else [f"CPU {percent(h.process_cpu_percent, SCREEN)}"]
    lines.append((KEEP_HOST, [[f"host memory RSS {_mib(h.process_rss_mib)}"] + cpu,
                              [f"host RSS {_mib(h.process_rss_mib)}"] + cpu]))
    lines.append((KEEP_RAM, [[f"RAM used {_of(h.ram_used_mib, h.ram_total_mib)}"]]))
    return lines, warn


def fit(lines: list[tuple[int, list[list[str]]]], width: int, rows: int) -> list:
    """The lines that fit `rows` rows at `width` cells, in their order, each whole, short or left out:
    the fewest left out, the most important kept first, then the fewest in a short form. All, fullest,
    while the size is not known yet."""
    if width <= 0 or rows <= 0:
        return [alternatives[0] for _, alternatives in lines]
    heights = [[flow(groups, width).count("\n") + 1 for groups in alternatives] for _, alternatives in lines]
    order = sorted(range(len(lines)), key=lambda i: lines[i][0])  # most important first
    best: Optional[tuple] = None
    for states in product(*[range(len(alternatives) + 1) for _, alternatives in lines]):  # last state: left out
        kept = [i for i, state in enumerate(states) if state < len(lines[i][1])]
        if kept and sum(heights[i][states[i]] for i in kept) > rows:
            continue
        key = (tuple(states[i] == len(lines[i][1]) for i in order), tuple(states[i] for i in order))
        if best is None or key < best[0]:
            best = (key, states)
    if best is None or not any(state < len(lines[i][1]) for i, state in enumerate(best[1])):
        return [lines[order[0]][1][-1]]  # nothing fits whole: the most important line, short, cut as it must be
    return [lines[i][1][state] for i, state in enumerate(best[1]) if state < len(lines[i][1])]


class DevicesPane(Vertical):
    """GPU memory (a bar and the three figures labelled apart), host memory (RSS, RAM) and CPU, a memory sparkline."""

    def compose(self) -> ComposeResult:
        yield FlowStatic("waiting for device telemetry…", id="devices-text")
        yield QuietStatic("", id="spark-label")
        yield MemorySpark([], id="memory-spark")  # bars from 0 MiB, not from the smallest value

    def on_mount(self) -> None:
        self.border_title = "Devices"
        self._shown: Any = None

    def _rows(self) -> int:
        """Rows the figures may take: the pane's less the sparkline and its label when they show."""
        rows = self.content_size.height
        label, spark = self.query_one("#spark-label"), self.query_one("#memory-spark")
        if spark.styles.display != "none":  # the sparkline takes what the figures leave, 2 rows at least
            rows -= label.outer_size.height + 2
        return rows

    def on_resize(self) -> None:
        """Another size (the terminal's, or pending changes taking rows above): fit the figures again."""
        if self._shown is not None:
            lines, _ = device_lines(*self._shown)
            text = self.query_one("#devices-text", FlowStatic)
            text.show_lines(fit(lines, text.content_size.width, self._rows()))

    def show(self, sample: Any, spark: list[float], ended: bool = False) -> None:
        """`ended`: the engine has exited: memory figures are its last reading, marked so; no load (CPU, util)
        nor memory bar, which would read as live."""
        text = self.query_one("#devices-text", FlowStatic)
        title = "Devices · last reading" if ended else "Devices"
        if self.border_title != title:  # setting a border title repaints the whole pane: only when it changes
            self.border_title = title
        if sample is None:
            text.show_text("no device telemetry" if ended else "no device telemetry yet")
            return
        self._shown = (sample, ended)
        lines, warn = device_lines(sample, ended)
        text.show_lines(fit(lines, text.content_size.width, self._rows()))
        self.set_class(warn and not ended, "warning")
        gpu = sample.gpus[0] if sample.gpus else None
        label = f"GPU{gpu.index} memory used" if gpu is not None and gpu.memory_used_mib is not None \
            else "host memory RSS"
        recent = spark[-60:]
        if recent:
            lo, hi = min(recent), max(recent)
            span = _mib(hi) if lo == hi else f"{mib(lo, SCREEN)}–{_mib(hi)}"
            self.query_one("#spark-label", QuietStatic).show_text(f"[dim]{label} over {len(recent)} s: {span}[/]")
        spark_widget = self.query_one("#memory-spark", Sparkline)
        if list(spark_widget.data or []) != spark[-60:]:
            spark_widget.data = spark[-60:]
