"""Checks on the hot store: agreement with history, and freshness of the newest reading.
All four (two per stream) run in one step."""

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import dagster as dg

from energy_pipelines.contract import HOURLY_TOTALS_TABLES, Stream
from energy_pipelines.defs.hot_store.assets import STATUS_ASSETS
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.hot_status.refresh import HOT_STREAMS, STATUS_TABLES
from energy_pipelines.load.database import Connection

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


def _agrees_with_history(conn: Connection, stream: Stream) -> dg.AssetCheckResult | str:
    """The check's result, or the reason it is skipped (no status yet: nothing to compare)."""
    status = STATUS_TABLES[stream.name]
    sql = _DISAGREEING_SQL.format(
        device=stream.key[0], status=status, totals=HOURLY_TOTALS_TABLES[stream.name]
    )
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {status}")  # one row per device
        devices = int(cur.fetchone()[0])
        cur.execute(sql)
        wrong = [row[0] for row in cur.fetchall()]
    conn.rollback()
    if devices == 0:
        return f"{AGREES} of {status} skipped: no {stream.name} status yet, nothing to compare"
    return dg.AssetCheckResult(
        asset_key=STATUS_ASSETS[stream.name],
        check_name=AGREES,
        passed=not wrong,
        description=(
            f"{len(wrong)}{'+' if len(wrong) == 20 else ''} of {devices} {stream.name} "
            "statuses are not their device's latest reading in history"
            if wrong
            else f"all {devices} {stream.name} statuses are their device's latest reading"
        ),
        metadata={
            "devices_checked": devices,
            "devices_disagreeing (first 20)": ", ".join(wrong) or "none",
        },
    )


def _fresh_data(conn: Connection, stream: Stream, limit: float) -> dg.AssetCheckResult:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT max(ts), now(), extract(epoch FROM now() - max(ts)) / 60"
            f" FROM {STATUS_TABLES[stream.name]}"  # a contract constant
        )
        newest, now, age_minutes = cur.fetchone()
    conn.rollback()
    return freshness_result(stream, newest, now, age_minutes, limit)


def freshness_result(
    stream: Stream,
    newest: datetime | None,
    now: datetime,
    age_minutes: float | Decimal | None,
    limit: float,
) -> dg.AssetCheckResult:
    """Fresh when the newest reading is at most `limit` minutes old by the database's clock.
    A reading stamped after that clock has no age: it is named clock skew, with the offset."""
    key = STATUS_ASSETS[stream.name]
    metadata: dict[str, object] = {"database_now": str(now), "limit_minutes": limit}
    if newest is None or age_minutes is None:
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=FRESH,
            passed=False,
            description=f"no {stream.name} reading in the status table yet",
            metadata={**metadata, "newest_reading": "none"},
        )
    age = float(age_minutes)
    metadata["newest_reading"] = str(newest)
    if age < 0:
        skew = -age
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=FRESH,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"clock skew: the newest {stream.name} reading is stamped {skew:.1f} minutes "
                "after the database's clock; a gateway's clock is ahead (or the database's "
                "behind), so the data's age cannot be measured"
            ),
            metadata={**metadata, "clock_skew_minutes": round(skew, 1)},
        )
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=FRESH,
        passed=age <= limit,
        description=(
            f"the newest {stream.name} reading is {age:.1f} minutes old (limit {limit:g})"
        ),
        metadata={**metadata, "age_minutes": round(age, 1)},
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
                agrees = _agrees_with_history(conn, stream)
                if isinstance(agrees, str):
                    context.log.info(agrees)  # no result: Dagster shows the check Skipped
                else:
                    yield agrees
            if dg.AssetCheckKey(key, FRESH) in selected:
                yield _fresh_data(conn, stream, limit)


STATUS_CHECKS = [hot_store_checks]
