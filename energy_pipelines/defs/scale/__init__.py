"""Scaling out: the units job and the executor that runs it (in process, or Celery workers)."""

from typing import Any

from energy_pipelines.defs.scale.executors import executor_choice
from energy_pipelines.defs.scale.jobs import ingest_units_job

SCALE_JOBS = [ingest_units_job]


def landing_job(single_step_job: Any) -> Any:
    """The job the landing sensor requests: the units job when ENERGY_EXECUTOR names a
    distributed executor (celery, k8s: its steps go to workers or pods), else the single-step
    ingest job."""
    return single_step_job if executor_choice() == "in_process" else ingest_units_job
