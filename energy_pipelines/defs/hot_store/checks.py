"""Checks on the hot store: agreement with history, and freshness of the newest reading.
All four (two per stream) run in one step."""

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import dagster as dg

from energy_pipelines.contract import HOURLY_TOTALS_TABLES, Stream
from energy_pipelines.defs.hot_store.assets import STATUS_ASSETS
from energy_pipelines.defs.ingestion.checks import latest_loading_run
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.hot_status.refresh import HOT_STREAMS, STATUS_TABLES
from energy_pipelines.load.database import Connection
from energy_pipelines.load.reconcile import time_spans

AGREES = "agrees_with_history"
FRESH = "fresh_data"


# The devices a run's files touched: those with hourly totals (sql/014) in the hours of the
# files' time spans (the hour index keeps this to the hours touched, whatever the history).
def _touched_sql(device: str, totals: str) -> str:
    return f"""
SELECT DISTINCT t.{device} FROM {totals} t
 WHERE t.hour >= date_trunc('hour', $1::timestamptz, 'UTC') AND t.hour <= $2
"""


# Of those devices, the ones whose status is not their latest reading in history, to the
# minute: the status must fall in the device's latest hour of the hourly totals, in its latest
# minute (its bit the highest set); a device without a status disagrees too. One index probe
# per device, so the cost follows what the run touched, not the length of history.
def _disagreeing_sql(device: str, status: str, totals: str) -> str:
    return f"""
SELECT d.device
  FROM unnest($1::text[]) AS d(device)
  LEFT JOIN {status} s ON s.{device} = d.device
  LEFT JOIN LATERAL (
        SELECT t.hour, t.minutes FROM {totals} t
         WHERE t.{device} = d.device
         ORDER BY t.hour DESC
         LIMIT 1
  ) latest ON true
 WHERE s.{device} IS NULL
    OR latest.hour IS DISTINCT FROM date_trunc('hour', s.ts, 'UTC')
    OR latest.minutes >> extract(minute FROM s.ts AT TIME ZONE 'UTC')::integer <> 1
 ORDER BY 1
"""


_LISTED = 20

_RUN_FILES_SQL = """
SELECT min_ts, max_ts FROM ingested_files
 WHERE run_id = $1 AND stream = $2 AND status = 'loaded' AND rows_loaded > 0
"""


def _touched_devices(conn: Connection, stream: Stream, run_id: str) -> list[str]:
    """The devices with readings in the hours the run's loaded files span."""
    totals = HOURLY_TOTALS_TABLES[stream.name]
    devices: set[str] = set()
    with conn.cursor() as cur:
        cur.execute(_RUN_FILES_SQL, (run_id, stream.name))
        files = cur.fetch_polars()
        for start, end in time_spans(files):
            cur.execute(_touched_sql(device=stream.key[0], totals=totals), (start, end))
            devices.update(row[0] for row in cur.fetchall())
    conn.rollback()
    return sorted(devices)


def _checked_run(conn: Connection, stream: Stream, run_id: str) -> str | None:
    """This run when it loaded files of the stream, else the stream's latest run that did."""
    with conn.cursor() as cur:
        cur.execute(_RUN_FILES_SQL + " LIMIT 1", (run_id, stream.name))
        loaded_here = cur.fetchone() is not None
    conn.rollback()
    return run_id if loaded_here else latest_loading_run(conn, stream)


def _agrees_with_history(
    conn: Connection, stream: Stream, run_id: str
) -> dg.AssetCheckResult | str:
    """The check's result over the devices the files of the run touched, or the reason it is
    skipped (no file loaded yet: nothing to compare)."""
    status = STATUS_TABLES[stream.name]
    checked_run = _checked_run(conn, stream, run_id)
    if checked_run is None:
        return f"{AGREES} of {status} skipped: no {stream.name} file loaded yet, nothing to compare"
    devices = _touched_devices(conn, stream, checked_run)
    sql = _disagreeing_sql(
        device=stream.key[0], status=status, totals=HOURLY_TOTALS_TABLES[stream.name]
    )
    wrong: list[str] = []
    if devices:
        with conn.cursor() as cur:
            cur.execute(sql, (devices,))
            wrong = [row[0] for row in cur.fetchall()]
        conn.rollback()
    return dg.AssetCheckResult(
        asset_key=STATUS_ASSETS[stream.name],
        check_name=AGREES,
        passed=not wrong,
        description=(
            f"{len(wrong)} of {len(devices)} {stream.name} devices touched by run {checked_run} "
            "have a status that is not their latest reading in history"
            if wrong
            else f"all {len(devices)} {stream.name} devices touched by run {checked_run} have "
            "their latest reading as status"
        ),
        metadata={
            "run_checked": checked_run,
            "devices_checked": len(devices),
            "devices_disagreeing": len(wrong),
            f"devices_disagreeing (first {_LISTED})": ", ".join(wrong[:_LISTED]) or "none",
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
                    "Each device the run's files touched has its latest reading in history as "
                    "status, to the minute (checked against the hourly totals in the hours the "
                    "files span, so the cost follows the run, not the length of history). Run "
                    "on its own, it checks the stream's latest run that loaded files."
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
                agrees = _agrees_with_history(conn, stream, context.run.run_id)
                if isinstance(agrees, str):
                    context.log.info(agrees)  # no result: Dagster shows the check Skipped
                else:
                    yield agrees
            if dg.AssetCheckKey(key, FRESH) in selected:
                yield _fresh_data(conn, stream, limit)


STATUS_CHECKS = [hot_store_checks]
