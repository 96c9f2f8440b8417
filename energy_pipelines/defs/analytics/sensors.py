"""Late data: re-materialize every day that newly loaded files touched."""

from typing import Any

import dagster as dg

from energy_pipelines.analytics.daily import advance_daily_watermark, pending_days
from energy_pipelines.defs.analytics.partitions import DAILY_PARTITIONS
from energy_pipelines.defs.resources import EnergyStorage


def build_daily_sensor(job: Any, quality_job: Any) -> dg.SensorDefinition:
    @dg.sensor(
        name="daily_analytics_sensor",
        jobs=[job, quality_job],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Requests one daily run and one data-quality run per UTC day touched by files "
            "loaded since the last tick (late files and new meter pairings included). The "
            "position is kept in PostgreSQL."
        ),
    )
    def daily_analytics_sensor(
        context: dg.SensorEvaluationContext, energy: EnergyStorage
    ) -> dg.SensorResult | dg.SkipReason:
        with energy.connection() as conn:
            pending = pending_days(conn)
            if not pending.days:
                if pending.new_files:
                    advance_daily_watermark(conn, pending)
                return dg.SkipReason("no loaded files since the last daily refresh")
            valid_keys = set(DAILY_PARTITIONS.get_partition_keys())
            requests = []
            for day in pending.days:
                key = day.isoformat()
                if key not in valid_keys:
                    context.log.warning(f"{key} is outside the daily partitions (ENERGY_FIRST_DAY)")
                    continue
                requests.append(
                    dg.RunRequest(
                        run_key=f"daily-{key}-{pending.position}",
                        partition_key=key,
                        job_name=job.name,
                    )
                )
                requests.append(
                    dg.RunRequest(
                        run_key=f"quality-{key}-{pending.position}",
                        partition_key=key,
                        job_name=quality_job.name,
                    )
                )
            # Run requests are durable once returned, so the position can move on.
            advance_daily_watermark(conn, pending)
        return dg.SensorResult(run_requests=requests)

    return daily_analytics_sensor
