"""UTC day partitions of the daily tables."""

import dagster as dg

from energy_pipelines.settings import Settings

DAILY_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=Settings.from_env().first_day, timezone="UTC", end_offset=1
)
