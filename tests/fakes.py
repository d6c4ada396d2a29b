"""A scripted engine for layout and snapshot tests: replays fixed snapshots, events and history."""

from __future__ import annotations

import math
from typing import Any, Optional

from trainmon.engine.control.channel import Update
from trainmon.engine.core import messages as msg
from trainmon.engine.core.device_samples import DeviceSample, GpuSample, HostSample
from trainmon.engine.core.history import History


def digits_mid_run(**changes: Any) -> msg.Snapshot:
    """The digits job (m=1437, b=32, k=4) in epoch 2, iteration 22 of 45: consistent numbers throughout."""
    base = dict(
        status=msg.RUNNING, job="digits", device="cuda:0", epoch=2, epochs=5, iteration_in_epoch=22,
        iterations_in_epoch=45, last_batch_size=29, batch_size=32, accum=4, lr=0.05, dataset_size=1437,
        global_iteration=67, total_iterations=225, global_step=17, total_steps=60, steps_in_epoch=5,
        steps_per_epoch=12, samples_seen=2141, total_samples=7185, window_position=2, window_size=4,
        window_samples=64, effective_batch_size=128, loss=0.4127, window_loss=0.4391, epoch_loss=0.5012,
        best_loss=0.3310, val_loss=0.6120, val_metrics={"acc": 0.8611}, best_val_loss=0.6120,
        iterations_per_second=742.5, samples_per_second=23760.0, elapsed=12.4, active_seconds=11.9,
        eta_seconds=21.5, history_version=67, time=100.0,
        devices=DeviceSample(
            time=99.5,
            gpus=(GpuSample(index=0, name="NVIDIA H100 80GB HBM3", memory_used_mib=74_250.0, memory_total_mib=81_559.0,
                            utilization_percent=97.0, temperature_c=71.0, power_w=512.0, process_memory_mib=73_900.0,
                            process_memory_source="nvml", torch_allocated_mib=61_200.0, torch_reserved_mib=72_100.0),),
            host=HostSample(process_rss_mib=1_812.0, process_cpu_percent=99.0, ram_used_mib=9_120.0,
                            ram_total_mib=24_105.0, cpu_count=2),
            nvml_available=True,
        ),
    )
    base.update(changes)
    return msg.Snapshot(**base)


def loss_curve(n: int) -> list[tuple[float, float]]:
    """A deterministic falling, noisy loss curve over iterations 1..n."""
    return [(i, 2.3 * math.exp(-i / 25) + 0.25 + 0.15 * math.sin(i * 1.7)) for i in range(1, n + 1)]


class ScriptedRun:
    """Viewer API of `ProcessRun`, replaying one scripted state: a snapshot, events and loss points."""

    def __init__(self, snapshot: msg.Snapshot, points: Optional[list] = None, events: Optional[list] = None,
                 alive: bool = True) -> None:
        self.loss_history = History()
        self.loss_history.extend(points if points is not None else loss_curve(snapshot.global_iteration))
        self._pending: list[Any] = list(events or [])
        self._snapshot: Optional[msg.Snapshot] = snapshot
        self.latest = snapshot
        self.sent: list[Any] = []
        self.alive = alive
        self.exitcode = None if alive else 0

    def poll(self) -> Update:
        update = Update(snapshot=self._snapshot, events=self._pending)
        self._snapshot, self._pending = None, []
        return update

    def later(self, snapshot: Optional[msg.Snapshot] = None, events: Optional[list] = None) -> None:
        """Script what the next poll brings: events that arrive live, after the first (replayed) update."""
        if snapshot is not None:
            self._snapshot = self.latest = snapshot
        self._pending.extend(events or [])

    def send(self, command: Any) -> None:
        self.sent.append(command)

    def start(self) -> "ScriptedRun":
        return self

    def join(self, timeout: Optional[float] = None) -> None:
        pass

    def terminate(self) -> None:
        self.alive = False
