"""Daily efficiency per vehicle and usage per meter, one UTC day per partition."""

from datetime import date

import dagster as dg

from energy_pipelines.analytics.daily import materialize_meter_day, materialize_vehicle_day
from energy_pipelines.analytics.daily_position import newest_file_ids, record_day_refreshed
from energy_pipelines.analytics.fleet_chart import (
    chart_title,
    recent_efficiency,
    render_png,
    vehicle_days,
    worst_vehicles,
)
from energy_pipelines.defs.analytics.checks import (
    FLEET_FAULTS_CHECK,
    INSUFFICIENT_EVIDENCE_CHECK,
    daily_check_spec,
    fleet_faults,
    insufficient_evidence,
)
from energy_pipelines.defs.analytics.partitions import DAILY_PARTITIONS
from energy_pipelines.defs.analytics.quality_assets import daily_device_quality
from energy_pipelines.defs.ingestion.assets import HISTORY_ASSETS
from energy_pipelines.defs.pictures import picture_metadata
from energy_pipelines.defs.resources import POSTGRES_WRITES_POOL, EnergyStorage
from energy_pipelines.defs.tables import markdown_table

ANALYTICS_GROUP = "analytics"


@dg.asset(
    name="daily_vehicle_efficiency",
    group_name=ANALYTICS_GROUP,
    partitions_def=DAILY_PARTITIONS,
    deps=[HISTORY_ASSETS["vehicle"], HISTORY_ASSETS["meter"], HISTORY_ASSETS["correlation"]],
    kinds={"postgres"},
    description=(
        "Per UTC day and vehicle: DC delivered / AC consumed by its paired meters, raw and over "
        "paired intervals, with a status decided on the paired evidence (normal, "
        "fault_suspected, implausible, insufficient_data, idle, no_ac_data, uncorrelated). "
        "A day is replaced atomically."
    ),
    code_version="1",
    pool=POSTGRES_WRITES_POOL,
    owners=["team:analytics"],
    check_specs=[
        daily_check_spec(
            FLEET_FAULTS_CHECK,
            "daily_vehicle_efficiency",
            "Warns and lists vehicles with fault_suspected or implausible status that day.",
        ),
        daily_check_spec(
            INSUFFICIENT_EVIDENCE_CHECK,
            "daily_vehicle_efficiency",
            "Warns and lists vehicles whose paired intervals hold too little energy to judge "
            "their efficiency that day (status insufficient_data), with their coverage.",
        ),
    ],
)
def daily_vehicle_efficiency(
    context: dg.AssetExecutionContext, energy: EnergyStorage
) -> dg.MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    settings = energy.settings()
    with energy.connection() as conn:
        # Read before the recompute: the day then reflects every file up to these ids, and
        # the daily watermark moves only once that is recorded (daily_position.py).
        positions = newest_file_ids(conn)
        result = materialize_vehicle_day(conn, day, settings.evidence)
        record_day_refreshed(
            conn, day, "daily_vehicle_efficiency", positions, date.fromisoformat(settings.first_day)
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.rows,
            **{f"status_{k}": v for k, v in sorted(result.status_counts.items())},
        },
        check_results=[
            fleet_faults(context.partition_key, result),
            insufficient_evidence(context.partition_key, result),
        ],
    )


@dg.asset(
    name="daily_meter_usage",
    group_name=ANALYTICS_GROUP,
    partitions_def=DAILY_PARTITIONS,
    deps=[HISTORY_ASSETS["meter"]],
    kinds={"postgres"},
    description="Per UTC day and meter: AC consumed, voltage average/min/max, reading count.",
    code_version="1",
    pool=POSTGRES_WRITES_POOL,
    owners=["team:analytics"],
)
def daily_meter_usage(
    context: dg.AssetExecutionContext, energy: EnergyStorage
) -> dg.MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    with energy.connection() as conn:
        positions = newest_file_ids(conn)
        rows = materialize_meter_day(conn, day)
        record_day_refreshed(
            conn,
            day,
            "daily_meter_usage",
            positions,
            date.fromisoformat(energy.settings().first_day),
        )
    return dg.MaterializeResult(metadata={"dagster/row_count": rows})


# Eager, but not held back by missing upstream days: a day's partition exists from the load
# that touched it, before the daily run that fills it (and a day that run failed stays
# missing), and eager()'s "no parent missing" would hold the chart back meanwhile.
CHART_AFTER_DAILY_CHANGES = dg.AutomationCondition.eager().without(
    ~dg.AutomationCondition.any_deps_missing()
)


@dg.asset(
    name="fleet_efficiency_chart",
    group_name=ANALYTICS_GROUP,
    deps=[daily_vehicle_efficiency],
    kinds={"python", "postgres"},
    description=(
        "A picture of the last 7 days: the distribution of daily efficiency and the vehicles "
        "with the lowest mean ratio. Refreshed after daily partitions change."
    ),
    code_version="1",
    owners=["team:analytics"],
    automation_condition=CHART_AFTER_DAILY_CHANGES,
)
def fleet_efficiency_chart(
    context: dg.AssetExecutionContext, energy: EnergyStorage
) -> dg.MaterializeResult:
    settings = energy.settings()
    with energy.connection() as conn:
        daily = recent_efficiency(conn)
    png = render_png(daily, settings.fault_threshold)
    path = settings.state_dir / "charts" / "fleet_efficiency.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    worst = worst_vehicles(daily)
    total, with_ratio = vehicle_days(daily)
    return dg.MaterializeResult(
        metadata={
            **picture_metadata(context, "chart", png, "fleet efficiency", str(path)),
            "path": dg.MetadataValue.path(str(path)),
            "title": chart_title(daily),
            "vehicle_days": total,
            "vehicle_days_with_ratio": with_ratio,
            "worst_vehicles": markdown_table(
                ("vehicle", "mean ratio", "days"),
                (
                    (r["vehicle_id"], f"{r['mean_ratio']:.4f}", r["days"])
                    for r in worst.iter_rows(named=True)
                ),
            ),
        }
    )


# Dagster's default automation sensor starts stopped: this one is on, so the chart follows the
# daily partitions without a click in the UI.
chart_automation = dg.AutomationConditionSensorDefinition(
    "fleet_chart_automation",
    target=dg.AssetSelection.assets(fleet_efficiency_chart),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes fleet_efficiency_chart after daily partitions change.",
)

DAILY_ASSETS = [daily_vehicle_efficiency, daily_meter_usage]
# Data quality reads a day's readings again (seconds for a full day of the fleet): its own job,
# so a load's daily refresh does not wait for it.
QUALITY_ASSETS = [daily_device_quality]
