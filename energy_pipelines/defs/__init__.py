"""Dagster definitions: thin wiring around the stage functions. `energy-pipelines ui` shows them
(`dg dev -m energy_pipelines.defs`; by hand, `dg dev -w workspace.yaml`)."""

import dagster as dg

from energy_pipelines.defs.analytics.assets import (
    DAILY_ASSETS,
    QUALITY_ASSETS,
    chart_automation,
    fleet_efficiency_chart,
)
from energy_pipelines.defs.analytics.partitions import DAILY_PARTITIONS
from energy_pipelines.defs.analytics.sensors import build_daily_sensor
from energy_pipelines.defs.hot_store.assets import STATUS_ASSETS, refresh_current_status
from energy_pipelines.defs.hot_store.checks import STATUS_CHECKS
from energy_pipelines.defs.ingestion.assets import (
    HISTORY_ASSETS,
    LANDING_SPECS,
    load_landing_files,
)
from energy_pipelines.defs.ingestion.sensors import build_landing_sensor
from energy_pipelines.defs.maintenance.jobs import retention_job, retention_schedule
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.defs.scale import SCALE_JOBS, landing_job

# Every job runs its steps in the run's own process: they run one after the other anyway, and
# the default multiprocess executor starts a Python per step (load, hot status, checks), which
# cost 25-42 s a run on a busy 2-core machine against 6-12 s of work.
ingest_job = dg.define_asset_job(
    name="ingest_job",
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.assets(*HISTORY_ASSETS.values(), *STATUS_ASSETS.values()),
    description="Load every settled landing file into history exactly once, then refresh status.",
)

daily_analytics_job = dg.define_asset_job(
    name="daily_analytics_job",
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.assets(*DAILY_ASSETS),
    partitions_def=DAILY_PARTITIONS,
    description="Recompute one UTC day of daily_vehicle_efficiency and daily_meter_usage.",
)

daily_quality_job = dg.define_asset_job(
    name="daily_quality_job",
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.assets(*QUALITY_ASSETS),
    partitions_def=DAILY_PARTITIONS,
    description="Recompute one UTC day of daily_device_quality (and a day beside it if needed).",
)

defs = dg.Definitions(
    assets=[
        *LANDING_SPECS.values(),
        load_landing_files,
        refresh_current_status,
        *DAILY_ASSETS,
        *QUALITY_ASSETS,
        fleet_efficiency_chart,
    ],
    asset_checks=STATUS_CHECKS,
    jobs=[ingest_job, daily_analytics_job, daily_quality_job, retention_job, *SCALE_JOBS],
    schedules=[retention_schedule],
    sensors=[
        build_landing_sensor(landing_job(ingest_job)),
        build_daily_sensor(daily_analytics_job, daily_quality_job),
        chart_automation,
    ],
    resources={"energy": EnergyStorage()},
)
