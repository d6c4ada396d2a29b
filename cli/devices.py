"""`trainmon devices`: one telemetry sample of every GPU and the host, as a table or one JSON object."""

from __future__ import annotations

import json
from typing import Optional

import click
from rich.console import Console
from rich.table import Table

from trainmon.engine.core.device_samples import DeviceSample
from trainmon.engine.core.format import TABLE, fixed, mib, percent
from trainmon.engine.telemetry.sampler import DeviceSampler

HOST_PROCESS_FIELDS = ("process_rss_mib", "process_cpu_percent")  # this one-shot command's own figures


def render_devices(sample: DeviceSample, console: Optional[Console] = None) -> None:
    """Print `sample` as a GPU table (or the reason there is none), a host table and the reasons for blanks.

    The host table shows the machine's RAM and CPU count only: the RSS and CPU share of this
    short-lived command itself say nothing about training (the JSON still carries them).
    """
    console = console or Console(highlight=False)
    if sample.gpus:
        table = Table(title="GPUs (NVML)")
        # no torch columns: this command never initialises CUDA, so torch's counters would be blank
        for header in ("gpu", "name", "used / total MiB", "util", "temp", "power", "this process MiB", "MIG"):
            table.add_column(header, justify="left" if header == "name" else "right")
        for g in sample.gpus:
            process = mib(g.process_memory_mib, TABLE)
            if g.process_memory_source:
                process += f" ({g.process_memory_source})"
            mig = "—" if g.mig is None else ("on" if g.mig else "off")
            memory = f"{mib(g.memory_used_mib, TABLE)} / {mib(g.memory_total_mib, TABLE)}"
            table.add_row(str(g.index), g.name or "—", memory, percent(g.utilization_percent, TABLE),
                          fixed(g.temperature_c, 0, TABLE, " °C"), fixed(g.power_w, 1, TABLE, " W"), process, mig)
        console.print(table)
    else:
        console.print(sample.nvml_reason or "no NVIDIA GPU (NVML unavailable)")
    h = sample.host
    host = Table(title="Host (psutil)")
    for header in ("RAM used / total MiB", "CPUs"):
        host.add_column(header, justify="right")
    host.add_row(f"{mib(h.ram_used_mib, TABLE)} / {mib(h.ram_total_mib, TABLE)}", fixed(h.cpu_count, 0, TABLE))
    console.print(host)
    for g in sample.gpus:
        for name, why in g.reasons.items():
            if not name.startswith("torch_"):
                console.print(f"gpu {g.index} {name}: {why}")
    for name, why in h.reasons.items():
        if name not in HOST_PROCESS_FIELDS:
            console.print(f"host {name}: {why}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def devices(as_json: bool) -> None:
    """Show every GPU (NVML) and the host (psutil) once.

    JSON: `DeviceSample.to_dict()`, with `time` on a monotonic clock and `timestamp` in seconds since
    the Unix epoch.
    """
    sampler = DeviceSampler()
    try:
        sample = sampler.sample_once()
    finally:
        sampler.stop()
    if as_json:
        click.echo(json.dumps(sample.to_dict()))
    else:
        render_devices(sample)
