"""Data quality per device and UTC day (analytics/quality.py), one UTC day per partition."""

from datetime import date

import dagster as dg

from energy_pipelines.analytics.gateway_coverage import (
    quiet_gateways,
    read_folder_hours,
    render_coverage_png,
)
from energy_pipelines.analytics.quality_db import refresh_quality_day
from energy_pipelines.defs.analytics.checks import (
    FROZEN_READINGS_CHECK,
    GATEWAY_COVERAGE_CHECK,
    REPORTING_CADENCE_CHECK,
    daily_check_spec,
    frozen_readings,
    gateway_coverage,
    reporting_cadence,
)
from energy_pipelines.defs.analytics.partitions import DAILY_PARTITIONS
from energy_pipelines.defs.ingestion.assets import HISTORY_ASSETS
from energy_pipelines.defs.pictures import picture_metadata
from energy_pipelines.defs.resources import POSTGRES_WRITES_POOL, EnergyStorage
from energy_pipelines.load.database import resolve_database_url


@dg.asset(
    name="daily_device_quality",
    group_name="analytics",
    partitions_def=DAILY_PARTITIONS,
    deps=[HISTORY_ASSETS["meter"], HISTORY_ASSETS["vehicle"]],
    kinds={"postgres"},
    description=(
        "Per UTC day, stream and device: expected and received intervals, coverage, gaps, "
        "frozen readings, spikes, SoC falling while charging (vehicles) and the estimated energy "
        "of short gaps. Flags on kept readings; a day is replaced atomically, and a day beside "
        "it whose expected span it changes is refreshed with it."
    ),
    code_version="1",
    pool=POSTGRES_WRITES_POOL,
    owners=["team:analytics"],
    check_specs=[
        daily_check_spec(
            FROZEN_READINGS_CHECK,
            "daily_device_quality",
            "Warns and lists devices whose readings froze that day "
            "(docs/analytics.md 'Data quality').",
        ),
        daily_check_spec(
            REPORTING_CADENCE_CHECK,
            "daily_device_quality",
            "Warns and lists devices that report less often than their stream's cadence "
            "setting (ENERGY_METER_CADENCE_SECONDS, ENERGY_VEHICLE_CADENCE_SECONDS): their "
            "coverage, gaps, estimates and paired figures are measured against the setting "
            "(docs/analytics.md 'Data quality').",
        ),
        daily_check_spec(
            GATEWAY_COVERAGE_CHECK,
            "daily_device_quality",
            "Warns and lists landing folders (gateways) that sent nothing for hours in which "
            "the rest of the fleet sent readings that day: one line per gateway, not per device.",
        ),
    ],
)
def daily_device_quality(
    context: dg.AssetExecutionContext, energy: EnergyStorage
) -> dg.MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    settings = energy.settings()
    with energy.connection() as conn:
        result = refresh_quality_day(conn, resolve_database_url(settings), day, settings)
        per_hour = read_folder_hours(conn, day)
    quiet = quiet_gateways(per_hour)
    chart = render_coverage_png(per_hour, day)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(result.rows.values()),
            "meter_rows": result.rows.get("meter", 0),
            "vehicle_rows": result.rows.get("vehicle", 0),
            "readings_read": result.readings_read,
            "devices_folded_again": result.devices_folded_again,
            "seconds": round(result.seconds, 3),
            **picture_metadata(context, "coverage_chart", chart, "coverage by landing folder"),
            "days_beside_refreshed": ", ".join(d.isoformat() for d in result.neighbours_refreshed)
            or "none",
        },
        check_results=[
            frozen_readings(context.partition_key, result),
            reporting_cadence(context.partition_key, result),
            gateway_coverage(context.partition_key, per_hour, quiet),
        ],
    )
