"""Retention as a job and a nightly schedule: raw history is kept ENERGY_RETENTION_DAYS days."""

import dagster as dg

from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.load.retention import drop_old_partitions


class RetentionConfig(dg.Config):
    # None: the installation's ENERGY_RETENTION_DAYS (default 90; 0 keeps everything).
    keep_days: int | None = None


@dg.op(description="Drop whole history day partitions older than keep_days (manifest kept).")
def drop_old_history_partitions(
    context: dg.OpExecutionContext, config: RetentionConfig, energy: EnergyStorage
) -> None:
    keep_days = energy.settings().retention_days if config.keep_days is None else config.keep_days
    if keep_days == 0:
        context.log.info("retention is off (ENERGY_RETENTION_DAYS=0): every day is kept")
        return
    with energy.connection() as conn:
        dropped = drop_old_partitions(conn, keep_days)
    context.log.info(f"dropped {len(dropped)} partition(s): {', '.join(dropped) or 'none'}")


@dg.job(description="History retention: drop day partitions older than keep_days.")
def retention_job() -> None:
    drop_old_history_partitions()


retention_schedule = dg.ScheduleDefinition(
    name="nightly_retention",
    job=retention_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Drops raw history older than ENERGY_RETENTION_DAYS (default 90) every night; daily "
        "tables, manifest and quarantine are kept. ENERGY_RETENTION_DAYS=0 keeps everything."
    ),
)
