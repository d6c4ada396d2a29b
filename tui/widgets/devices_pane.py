"""Device memory and load: GPU figures when telemetry has them, host memory always."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline

from trainmon.engine.core.format import SCREEN, fixed, mib, percent

from .quiet import QuietStatic

BAR = 12  # cells of the GPU memory bar


def _mib(value: Any) -> str:
    """`7,310 MiB`, `--` when unknown."""
    return mib(value, SCREEN, unit=True)


def _of(used: Any, total: Any) -> str:
    """`74,250 of 81,559 MiB`; `-- of 81,559 MiB`; the unit on the used figure when the total is unknown."""
    if total is None:
        return _mib(used)
    return f"{mib(used, SCREEN)} of {_mib(total)}"


class DevicesPane(Vertical):
    """GPU memory (a bar and the three figures labelled apart), host memory (RSS, RAM) and CPU, a memory sparkline."""

    def compose(self) -> ComposeResult:
        yield QuietStatic("waiting for device telemetry…", id="devices-text")
        yield QuietStatic("", id="spark-label")
        yield Sparkline([], id="memory-spark")

    def on_mount(self) -> None:
        self.border_title = "Devices"

    def show(self, sample: Any, spark: list[float], ended: bool = False) -> None:
        """`ended`: the engine has exited: memory figures are its last reading, marked so; no load (CPU, util)
        nor memory bar, which would read as live."""
        text = self.query_one("#devices-text", QuietStatic)
        self.border_title = "Devices · last reading" if ended else "Devices"
        if sample is None:
            text.show_text("no device telemetry" if ended else "no device telemetry yet")
            return
        lines = ["[bold]run ended[/] [dim]· figures as last read[/]"] if ended else []
        warn = False
        if not sample.gpus:
            lines.append(f"[dim]{sample.nvml_reason or 'no NVIDIA GPU (NVML unavailable)'}[/]")
        for g in sample.gpus:
            used, total = g.memory_used_mib, g.memory_total_mib
            frac = (used / total) if used is not None and total else None
            warn = warn or (frac is not None and frac > 0.9)
            style = "bold red" if frac is not None and frac > 0.9 else "green"
            bar = ""
            if frac is not None and not ended:
                filled = int(round(frac * BAR))
                bar = f"memory [{style}]{'█' * filled}[/][dim]{'░' * (BAR - filled)}[/] {percent(frac * 100, SCREEN)} · "
            util = percent(g.utilization_percent, SCREEN)
            temp = fixed(g.temperature_c, 0, SCREEN, "°C")
            lines.append(f"GPU{g.index} {g.name or ''}")
            if not ended:
                lines.append(f"{bar}util {util} · {temp}")
            lines.append(f"GPU memory: NVML used {_of(used, total)}")
            lines.append(f"torch reserved  {_mib(g.torch_reserved_mib)}")
            lines.append(f"torch allocated {_mib(g.torch_allocated_mib)}")
        h = sample.host
        cpu = percent(h.process_cpu_percent, SCREEN)
        lines.append(f"host memory: RSS {_mib(h.process_rss_mib)}" + ("" if ended else f" · CPU {cpu}"))
        lines.append(f"RAM used {_of(h.ram_used_mib, h.ram_total_mib)}")
        text.show_text("\n".join(lines))
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
