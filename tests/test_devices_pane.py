"""Issue 9 item 17: the devices pane names its figures as memory, for the GPU and for the host."""

from __future__ import annotations

import dataclasses

from fakes import ScriptedRun, digits_mid_run

from trainmon.engine.core.device_samples import DeviceSample, HostSample
from trainmon.tui.app import TrainmonApp
from trainmon.tui.widgets.devices_pane import DevicesPane


async def devices_text(snapshot) -> tuple[list[str], str]:
    """The pane's lines and its sparkline label, as drawn at 100×30."""
    app = TrainmonApp(ScriptedRun(snapshot))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.poll_engine()
        await pilot.pause()
        pane = app.query_one(DevicesPane)
        return (str(pane.query_one("#devices-text").render()).splitlines(),
                str(pane.query_one("#spark-label").render()))


async def test_gpu_and_host_figures_are_labelled_memory():
    lines, spark = await devices_text(digits_mid_run())
    # issue 26 item 7: groups that wrap whole; at 100×30 every line fits, the GPU's full name too (its
    # temperature wraps whole to the next row)
    assert lines == [
        "GPU0 NVIDIA H100 80GB HBM3 · util 97%",
        "71°C",
        "memory ███████████░ 91%",
        "NVML used 74,250 of 81,559 MiB",
        "torch reserved 72,100 MiB",
        "torch allocated 61,200 MiB",
        "host memory RSS 1,812 MiB · CPU 99%",
        "RAM used 9,120 of 24,105 MiB",
    ]
    assert spark == "GPU0 memory used over 1 s: 74,250 MiB"


async def test_without_a_gpu_the_host_memory_is_still_named():
    devices = DeviceSample(time=1.0, gpus=(), host=HostSample(process_rss_mib=402.0, process_cpu_percent=97.0,
                           ram_used_mib=1271.0, ram_total_mib=None, cpu_count=2), nvml_available=False,
                           nvml_reason="no NVIDIA GPU (NVML unavailable)")
    lines, spark = await devices_text(digits_mid_run(device="cpu", devices=devices))
    assert lines[-2:] == ["host memory RSS 402 MiB · CPU 97%", "RAM used 1,271 MiB"]
    assert spark == "host memory RSS over 1 s: 402 MiB"


async def test_gpu_memory_that_nvml_cannot_read_stays_labelled():
    # a MIG slice: NVML answers no memory query, torch's counters still work
    s = digits_mid_run()
    gpu = dataclasses.replace(s.devices.gpus[0], memory_used_mib=None, utilization_percent=None)
    lines, spark = await devices_text(digits_mid_run(devices=dataclasses.replace(s.devices, gpus=(gpu,))))
    assert lines[:2] == ["GPU0 NVIDIA H100 80GB HBM3 · util --", "71°C"]
    assert "GPU memory: NVML used -- of 81,559 MiB" in lines and "torch reserved 72,100 MiB" in lines
    assert spark == "host memory RSS over 1 s: 1,812 MiB"
