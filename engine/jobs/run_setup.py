"""Build a run from what the user named: the job, its `RunConfig`, its plan, and a check on one batch.

Shared by the CLI (headless runs, `--detach`) and the detached engine process, so a broken job or
a bad option reads the same one line everywhere.
"""

from __future__ import annotations

from typing import Any, Optional


def prepare_run(job_name: str, image_size: Optional[int], seed: int, **overrides: Any):
    """`(spec, job, config, warnings)` for the job `job_name` (built-in name, FILE.py[:fn] or
    module[:attr]), planned (`RunConfig.plan`, the same plan `trainmon plan --job` prints) and checked
    on one batch. `warnings` are one line each, for the run's events. Bad input raises `PlanError`
    (one line). Costs the same for 5 epochs as for 10**8."""
    from trainmon.engine.jobs import JobSpec
    from trainmon.engine.jobs.job import RunConfig, check_precision, dataset_length, resolve_device
    from trainmon.engine.jobs.loader import absolute_target
    from trainmon.engine.jobs.preflight import preflight

    spec = JobSpec(absolute_target(job_name), image_size=image_size, seed=seed)
    job = spec.build()
    config = RunConfig.for_job(job, seed=seed, **overrides)
    device = resolve_device(config.device)  # fail fast on a bad device
    check_precision(config.precision, device)
    config.plan(dataset_length(job.train_dataset))  # e.g. drop_last leaving an epoch no batch
    warnings = preflight(job, config)
    return spec, job, config, warnings
