"""Checks of the daily assets: each is recorded against the UTC day it checked and says in its
description what it covered. A day with nothing to cover (no vehicle, no device, no folder
reported) is never a pass: the check warns and names the empty day. (Dagster requires a result
from every check of a single-asset step, so these checks cannot be left Skipped the way
`rows_reconcile` is.)"""

import warnings

import dagster as dg
import polars as pl

from energy_pipelines.analytics.daily import DayResult
from energy_pipelines.analytics.gateway_coverage import QuietGateway
from energy_pipelines.analytics.quality_db import QualityDayResult
from energy_pipelines.defs.analytics.partitions import DAILY_PARTITIONS
from energy_pipelines.defs.tables import markdown_table

FLEET_FAULTS_CHECK = "fleet_faults"
INSUFFICIENT_EVIDENCE_CHECK = "insufficient_evidence"
FROZEN_READINGS_CHECK = "frozen_readings"
GATEWAY_COVERAGE_CHECK = "gateway_coverage"
REPORTING_CADENCE_CHECK = "reporting_cadence"
_LISTED = 50


def daily_check_spec(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
    """A check of one day. With the asset's partitions the result carries its day; without
    them Dagster plans the check under the day and records the result under none, which
    leaves a Skipped row beside every real one."""
    with warnings.catch_warnings():
        # Partitioned check specs are a preview feature of Dagster 1.13 (pinned here).
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name, asset=asset, description=description, partitions_def=DAILY_PARTITIONS
        )


def _nothing_to_cover(check_name: str, day: str, what: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{day}: nothing to check, {what}",
        metadata={"day": day},
    )


def fleet_faults(day: str, result: DayResult) -> dg.AssetCheckResult:
    if result.rows == 0:
        return _nothing_to_cover(FLEET_FAULTS_CHECK, day, "no vehicle reported that day")
    return dg.AssetCheckResult(
        check_name=FLEET_FAULTS_CHECK,
        passed=not result.flagged,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{day}: {len(result.flagged)} of {result.rows} vehicles fault_suspected or implausible"
        ),
        metadata={
            "day": day,
            "vehicles_judged": result.rows,
            "flagged_vehicles": len(result.flagged),
            f"vehicles (first {_LISTED})": markdown_table(
                ("vehicle", "status", "ratio"),
                ((v, s, None if r is None else f"{r:.4f}") for v, s, r in result.flagged[:_LISTED]),
            ),
        },
    )


def insufficient_evidence(day: str, result: DayResult) -> dg.AssetCheckResult:
    if result.rows == 0:
        return _nothing_to_cover(INSUFFICIENT_EVIDENCE_CHECK, day, "no vehicle reported that day")
    return dg.AssetCheckResult(
        check_name=INSUFFICIENT_EVIDENCE_CHECK,
        passed=not result.insufficient,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{day}: {len(result.insufficient)} of {result.rows} vehicles with too little "
            "paired energy to judge"
        ),
        metadata={
            "day": day,
            "vehicles_judged": result.rows,
            "vehicles_insufficient_data": len(result.insufficient),
            f"vehicles (first {_LISTED})": markdown_table(
                ("vehicle", "energy coverage"),
                ((v, None if c is None else f"{c:.3f}") for v, c in result.insufficient[:_LISTED]),
            ),
        },
    )


def frozen_readings(day: str, result: QualityDayResult) -> dg.AssetCheckResult:
    return _devices_flagged(
        FROZEN_READINGS_CHECK,
        day,
        result,
        result.frozen,
        "devices with frozen readings",
        "devices_with_frozen_readings",
        ("stream", "device", "frozen runs", "frozen voltage runs"),
    )


def reporting_cadence(day: str, result: QualityDayResult) -> dg.AssetCheckResult:
    return _devices_flagged(
        REPORTING_CADENCE_CHECK,
        day,
        result,
        result.slower,
        "devices report less often than their stream's cadence setting",
        "devices_reporting_less_often",
        ("stream", "device", "reports every (min)", "cadence setting (min)", "intervals"),
    )


def _devices_flagged(
    check_name: str,
    day: str,
    result: QualityDayResult,
    flagged: list,
    what: str,
    count_key: str,
    columns: tuple[str, ...],
) -> dg.AssetCheckResult:
    """A warning check of the day's devices: how many of them `flagged` holds, and the first
    of those as a table."""
    devices = sum(result.rows.values())
    if devices == 0:
        return _nothing_to_cover(check_name, day, "no device reported that day")
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=not flagged,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{day}: {len(flagged)} of {devices} {what}",
        metadata={
            "day": day,
            "devices_checked": devices,
            count_key: len(flagged),
            f"devices (first {_LISTED})": markdown_table(columns, flagged[:_LISTED]),
        },
    )


def gateway_coverage(
    day: str, per_hour: pl.DataFrame, quiet: list[QuietGateway]
) -> dg.AssetCheckResult:
    folders = per_hour["folder"].n_unique()
    if folders == 0:
        return _nothing_to_cover(GATEWAY_COVERAGE_CHECK, day, "no landing folder sent readings")
    return dg.AssetCheckResult(
        check_name=GATEWAY_COVERAGE_CHECK,
        passed=not quiet,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{day}: {len(quiet)} of {folders} landing folders went quiet",
        metadata={
            "day": day,
            "folders_checked": folders,
            "folders_quiet": len(quiet),
            f"quiet folders (first {_LISTED})": markdown_table(
                ("folder", "quiet hours", "longest", "first quiet hour (UTC)"),
                (
                    (q.folder, q.hours_quiet, q.longest_quiet_hours, f"{q.first_quiet_hour:02d}:00")
                    for q in quiet[:_LISTED]
                ),
            ),
        },
    )
