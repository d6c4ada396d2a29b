"""The lesson's "what if": an epoch's plan worked out again for changed settings, beside the lesson's own.

Torch-free; every count comes from `distributed_plan.plan_distributed_epoch` (one rank is the plain
plan), so the table agrees with `trainmon plan --world-size W` to the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainmon.engine.core.distributed_plan import DistributedEpochPlan, plan_distributed_epoch
from trainmon.engine.core.lesson import plural, windows_text

# when each setting takes effect in a run (DESIGN.md: changes apply at safe points)
APPLIES = {
    "batch_size": "a run takes a new batch size at the next epoch start (the loader is rebuilt)",
    "accum": "a run takes new accumulation steps at the next window start",
    "samples": "a new training set is a new run",
    "drop_last": "drop_last is set when a run starts",
    "world_size": "a new world size is a new run under torchrun",
}


@dataclass(frozen=True)
class WhatIf:
    """An epoch's settings: `samples` (m) in the training set, batch size b, accumulation steps k,
    `drop_last`, and `world_size` ranks splitting the set (DistributedSampler)."""

    samples: int
    batch_size: int
    accum: int = 1
    drop_last: bool = False
    world_size: int = 1

    def plan(self) -> DistributedEpochPlan:
        """The epoch's plan. Raises `PlanError` (one line) for settings no run could take."""
        return plan_distributed_epoch(self.samples, self.world_size, self.batch_size, self.accum, self.drop_last)


def plan_rows(p: DistributedEpochPlan) -> list[tuple[str, str]]:
    """`(label, value)` rows of an epoch's plan: per-rank share (over several ranks), iterations, the last
    batch, the windows, optimizer steps, effective batch size and the real samples trained on."""
    r = p.rank
    rows = []
    if p.world_size > 1:
        extra = f" ({p.padded} padded)" if p.padded else ""
        rows.append(("samples per rank", f"{p.samples_per_rank}{extra}"))
    rows += [
        ("iterations per epoch", str(r.iterations)),
        ("last batch", plural(r.last_batch_size or 0, "sample")),
        ("windows", windows_text(r)),
        ("optimizer steps", str(r.optimizer_steps)),
        ("effective batch size", str(p.effective_batch_size)),
        ("samples seen per epoch", str(p.samples_seen)),
    ]
    return rows


def compare(now: WhatIf, changed: WhatIf) -> tuple[list[tuple[str, str, str]], list[str]]:
    """`(rows, notes)`: `(label, now, what if)` for every row of either plan, and for each setting that
    differs, when a run would take it (`APPLIES`). Raises `PlanError` for `changed` settings no run takes."""
    before, after = dict(plan_rows(now.plan())), dict(plan_rows(changed.plan()))
    order = dict.fromkeys(["samples per rank", *before, *after])  # the rows of both plans, in plan_rows' order
    rows = [(label, before.get(label, "—"), after.get(label, "—")) for label in order
            if label in before or label in after]
    notes = [APPLIES[name] for name in APPLIES if getattr(now, name) != getattr(changed, name)]
    return rows, notes
