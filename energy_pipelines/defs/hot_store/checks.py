"""Checks on the hot store: agreement with history, and freshness of the newest reading.
All four (two per stream) run in one step."""

from collections.abc import Iterator

import dagster as dg

from energy_pipelines.contract import Stream
from energy_pipelines.defs.hot_store.assets import STATUS_ASSETS
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.hot_status.refresh import HOT_STREAMS, STATUS_TABLES
from energy_pipelines.load.database import Connection
from energy_pipelines.load.history import HOURLY_TOTALS_TABLES

AGREES = "agrees_with_history"
FRESH = "fresh_data"

# Devices whose status is not their latest reading in history, to the minute: the status must
# fall in the device's latest hour of the hourly totals (sql/014), in its latest minute (its bit
# the highest set). Reading the totals, not history, keeps the check's cost and locks the same
# whatever the length of history.
_DISAGREEING_SQL = """
SELECT s.{device}
  FROM {status} s
  LEFT JOIN LATERAL (
        SELECT t.hour, t.minutes FROM {totals} t
         WHERE t.{device} = s.{device}
         ORDER BY t.hour DESC
         LIMIT 1
  ) latest ON true
 WHERE latest.hour IS DISTINCT FROM date_trunc('hour', s.ts, 'UTC')
    OR latest.minutes >> extract(minute FROM s.ts AT TIME ZONE 'UTC')::integer <> 1
 ORDER BY 1
 LIMIT 20
"""


def _agrees_with_history(conn: Connection, stream: Stream) -> dg.AssetCheckResult:
    sql = _DISAGREEING_SQL.format(
        device=stream.key[0],
        status=STATUS_TABLES[stream.name],
        totals=HOURLY_TOTALS_TABLES[stream.name],
    )
    with conn.cursor() as cur:
        cur.execute(sql)
        wrong = [row[0] for row in cur.fetchall()]
    conn.rollback()
    return dg.AssetCheckResult(
        asset_key=STATUS_ASSETS[stream.name],
        check_name=AGREES,
        passed=not wrong,
        metadata={"devices_disagreeing (first 20)": ", ".join(wrong) or "none"},
    )


def _fresh_data(conn: Connection, stream: Stream, limit: float) -> dg.AssetCheckResult:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT max(ts), extract(epoch FROM now() - max(ts)) / 60"
            f" FROM {STATUS_TABLES[stream.name]}"  # a contract constant
        )
        newest, age_minutes = cur.fetchone()
    conn.rollback()
    age = None if age_minutes is None else float(age_minutes)
    return dg.AssetCheckResult(
        asset_key=STATUS_ASSETS[stream.name],
        check_name=FRESH,
        passed=age is not None and age <= limit,
        metadata={
            "newest_reading": str(newest) if newest else "none",
            "age_minutes": round(age, 1) if age is not None else -1.0,
            "limit_minutes": limit,
        },
    )


@dg.multi_asset_check(
    name="hot_store_checks",
    specs=[
        spec
        for stream in HOT_STREAMS
        for spec in (
            dg.AssetCheckSpec(
                AGREES,
                asset=STATUS_ASSETS[stream.name],
                description=(
                    "Each device's status is its latest reading in history, to the minute "
                    "(checked against the hourly totals, whatever the length of history)."
                ),
            ),
            dg.AssetCheckSpec(
                FRESH,
                asset=STATUS_ASSETS[stream.name],
                description=(
                    f"Fails when the newest {stream.name} reading is older than "
                    "ENERGY_FRESHNESS_MINUTES (default 60)."
                ),
            ),
        )
    ],
    can_subset=True,
)
def hot_store_checks(
    context: dg.AssetCheckExecutionContext, energy: EnergyStorage
) -> Iterator[dg.AssetCheckResult]:
    selected = context.selected_asset_check_keys
    limit = energy.settings().freshness_minutes
    with energy.connection() as conn:
        for stream in HOT_STREAMS:
            key = STATUS_ASSETS[stream.name]
            if dg.AssetCheckKey(key, AGREES) in selected:
                yield _agrees_with_history(conn, stream)
            if dg.AssetCheckKey(key, FRESH) in selected:
                yield _fresh_data(conn, stream, limit)


STATUS_CHECKS = [hot_store_checks]
