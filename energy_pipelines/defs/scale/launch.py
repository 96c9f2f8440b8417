"""`energy-pipelines ingest --executor celery`: the units job run from this process, its steps
sent to the Celery workers, recorded in the same Dagster instance the workers open."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

from energy_pipelines.defs.scale.executors import EXECUTOR_ENV, CelerySettings, executor_choice
from energy_pipelines.load.database import redact_url


def use_executor(name: str | None) -> None:
    """Select the executor (None: ENERGY_EXECUTOR as it is), then load the definitions, which
    read it once."""
    if name is not None:
        os.environ[EXECUTOR_ENV] = name
    executor_choice()  # a wrong value fails here, before any run
    import energy_pipelines.defs  # noqa: F401


def execute_ingest(instance: dg.DagsterInstance, run_config: dict[str, Any]) -> Any:
    """The CLI's run: the single-step ingest job in process, or the units job on Celery."""
    from energy_pipelines.defs import defs

    if executor_choice() == "celery":
        return run_units_job(instance, run_config)
    return defs.resolve_job_def("ingest_job").execute_in_process(
        run_config=run_config, raise_on_error=False, instance=instance
    )


def check_broker(settings: CelerySettings, timeout: float = 5.0) -> None:
    """ConnectionError naming the broker when it does not answer: the run is not started."""
    from kombu import Connection

    try:
        with Connection(settings.broker, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as error:
        raise ConnectionError(
            f"the Celery broker at {redact_url(settings.broker)} does not answer "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__}); no run was"
            " started and no file was touched (ENERGY_CELERY_BROKER)"
        ) from None


def run_units_job(instance: dg.DagsterInstance, run_config: dict[str, Any]) -> Any:
    """Execute ingest_units_job with the executor of ENERGY_EXECUTOR; its result."""
    from energy_pipelines.defs import defs
    from energy_pipelines.defs.scale.jobs import UNITS_JOB

    if executor_choice() == "celery":
        check_broker(CelerySettings.from_env())
    job = defs.resolve_job_def(UNITS_JOB)
    if job.executor_def.name != executor_choice():
        raise ValueError(
            f"{EXECUTOR_ENV} changed after the definitions were loaded in this process: "
            "set it before the first run"
        )
    # The installed package's definitions, wherever the command runs from.
    recon = ReconstructableRepository.for_module(
        "energy_pipelines.defs", "defs"
    ).get_reconstructable_job(UNITS_JOB)
    return dg.execute_job(recon, instance, run_config=run_config, raise_on_error=False)
