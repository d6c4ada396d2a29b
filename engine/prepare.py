"""Build a run from what the user named: the job, its `RunConfig`, and a check on one batch.

Shared by the CLI (headless runs, `--detach`) and the detached engine process, so a broken job or
a bad option reads the same one line everywhere.
"""

from __future__ import annotations

from typing import Any, Optional


def prepare_run(job_name: str, image_size: Optional[int], seed: int, **overrides: Any):
    """`(spec, job, config)` for the job `job_name` (built-in name, FILE.py[:fn] or module[:attr]),
    checked on one batch. Bad input raises `PlanError` (one line)."""
    from .arithmetic import plan_run
    from .job import RunConfig, dataset_length, resolve_device
    from .jobs import JobSpec
    from .jobs.loader import absolute_target
    from .preflight import preflight

    spec = JobSpec(absolute_target(job_name), image_size=image_size, seed=seed)
    job = spec.build()
    config = RunConfig.for_job(job, seed=seed, **overrides)
    resolve_device(config.device)  # fail fast on a bad device
    preflight(job, config)
    if config.drop_last and config.epochs:
        plan_run(dataset_length(job.train_dataset), config.batch_size, config.accum, config.epochs,
                 True, config.batch_growth, config.max_batch_size)
    return spec, job, config
