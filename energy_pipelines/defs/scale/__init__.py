"""Scaling out: the units job and the executor that runs it (in process, or Celery workers)."""

from typing import Any

from energy_pipelines.defs.scale.executors import executor_choice
from energy_pipelines.defs.scale.jobs import ingest_units_job

SCALE_JOBS = [ingest_units_job]


def landing_job(single_step_job: Any) -> Any:
    """The job the landing sensor requests: the units job when ENERGY_EXECUTOR=celery (its
    steps go to the workers), else the single-step ingest job."""
    return ingest_units_job if executor_choice() == "celery" else single_step_job
