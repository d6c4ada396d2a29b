"""The status line's liveness part: what the run is doing now, the last iteration's age, where the time goes.

`training · last it 0.3s ago · data wait 62% · monitor 0.4%`, or in colour when it matters: `stalled 4m12s
(no iteration)` in red, `waiting for the next batch for 12s` in yellow. From the snapshot's `liveness`,
which the engine's heartbeat keeps fresh even while the loop is stuck.
"""

from __future__ import annotations

from typing import Optional

from trainmon.engine.core.liveness import STALLED, TRAINING, Liveness, phase_text

QUIET = 2.0  # seconds: a phase other than training shows once it lasts this long


def liveness_groups(live: Optional[Liveness], running: bool) -> list[str]:
    """Rich markup groups for the status line (none without a liveness, or once the run is not running)."""
    if live is None or not running:
        return []
    parts = []
    if live.phase == STALLED:
        parts.append(f"[bold red]{phase_text(live)}[/]")
    elif live.phase != TRAINING and live.phase_seconds >= QUIET:
        parts.append(f"[yellow]{phase_text(live)}[/]")
    if live.iteration_age is not None:
        parts.append(f"[dim]last it[/] {age(live.iteration_age)} [dim]ago[/]")
    if live.data_wait is not None:
        parts.append(f"[dim]data wait[/] {100 * live.data_wait:.0f}%")
    if live.monitor is not None:
        parts.append(f"[dim]monitor[/] {100 * live.monitor:.1f}%")
    return parts


def age(seconds: float) -> str:
    """`0.3s`, `12s`, `4m12s`."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    from trainmon.engine.core.liveness import short_duration

    return short_duration(seconds)
