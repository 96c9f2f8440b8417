"""Retention as a job and a nightly schedule, off until an operator turns it on."""

import dagster as dg

from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.load.retention import drop_old_partitions


class RetentionConfig(dg.Config):
    keep_days: int = 365


@dg.op(description="Drop whole history day partitions older than keep_days (manifest kept).")
def drop_old_history_partitions(
    context: dg.OpExecutionContext, config: RetentionConfig, energy: EnergyStorage
) -> None:
    with energy.connection() as conn:
        dropped = drop_old_partitions(conn, config.keep_days)
    context.log.info(f"dropped {len(dropped)} partition(s): {', '.join(dropped) or 'none'}")


@dg.job(description="History retention: drop day partitions older than keep_days.")
def retention_job() -> None:
    drop_old_history_partitions()


retention_schedule = dg.ScheduleDefinition(
    name="nightly_retention",
    job=retention_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Off by default: set keep_days in the run config and turn it on deliberately.",
)
