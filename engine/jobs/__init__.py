"""Jobs: the built-in ones and the picklable `JobSpec` that names a job so a child process can build it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # the job module imports torch; naming a job must not
    from trainmon.engine.jobs.job import Job


@dataclass(frozen=True)
class JobSpec:
    """Names a job: a built-in (`digits`, `seed-example`), `file.py[:function]` or `pkg.module[:attr]`.

    Picklable, so a child process can build it. `build()` seeds torch with `seed` first, so the
    model's initial weights are reproducible. `image_size` applies to `seed-example` only. Raises
    `PlanError` (a `JobError` for user jobs) with one line when the job cannot be built, the seed is
    outside 0..2**63 - 1, or `image_size` is given for another job.
    """

    target: str = "digits"
    image_size: Optional[int] = None
    seed: int = 0

    def build(self) -> Job:
        import torch

        from trainmon.engine.core.arithmetic import PlanError
        from trainmon.engine.jobs.builtin import BUILTIN_JOBS, make_builtin
        from trainmon.engine.jobs.job import check_seed
        from trainmon.engine.jobs.loader import load_job

        check_seed(self.seed)
        if self.image_size is not None and self.target != "seed-example":
            raise PlanError("--image-size applies only to --job seed-example")
        torch.manual_seed(self.seed)
        if self.target in BUILTIN_JOBS:
            return make_builtin(self.target, image_size=self.image_size)
        return load_job(self.target)
