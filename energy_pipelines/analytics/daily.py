"""Materialize one UTC day of daily_vehicle_efficiency and daily_meter_usage.

Each day is replaced atomically (DELETE + INSERT in one transaction) and reads only that day's
history partitions, so cost follows the days touched, not the size of history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from energy_pipelines.faults import crash_point
from energy_pipelines.load.database import Connection

_VEHICLE_DAY_SQL = """
INSERT INTO daily_vehicle_efficiency (
    day, vehicle_id, total_kwh_delivered_dc, total_kwh_consumed_ac, efficiency_ratio,
    avg_battery_temp, vehicle_record_count, meter_record_count, meter_ids, shared_meter, status
)
WITH vehicle AS (
    SELECT vehicle_id, sum(kwh_delivered_dc) AS dc, avg(battery_temp) AS temp, count(*) AS n
      FROM vehicle_readings_history
     WHERE ts >= $2 AND ts < $3
     GROUP BY vehicle_id
), meter AS (
    SELECT meter_id, sum(kwh_consumed_ac) AS ac, count(*) AS n
      FROM meter_readings_history
     WHERE ts >= $2 AND ts < $3
     GROUP BY meter_id
), pairing AS (
    SELECT vehicle_id, meter_id,
           count(*) OVER (PARTITION BY meter_id) > 1 AS meter_is_shared
      FROM meter_vehicle_correlation
), paired AS (
    SELECT p.vehicle_id,
           array_agg(p.meter_id ORDER BY p.meter_id) AS meter_ids,
           bool_or(p.meter_is_shared) AS shared,
           coalesce(sum(m.ac), 0) AS ac,
           coalesce(sum(m.n), 0) AS n
      FROM pairing p LEFT JOIN meter m USING (meter_id)
     GROUP BY p.vehicle_id
)
SELECT $1::date, v.vehicle_id, v.dc, p.ac,
       CASE WHEN p.ac > 0 THEN v.dc / p.ac END,
       v.temp, v.n, coalesce(p.n, 0), coalesce(p.meter_ids, '{}'), coalesce(p.shared, false),
       efficiency_status(p.vehicle_id IS NOT NULL, p.ac,
                         CASE WHEN p.ac > 0 THEN v.dc / p.ac END, $4)
  FROM vehicle v LEFT JOIN paired p USING (vehicle_id)
"""

_METER_DAY_SQL = """
INSERT INTO daily_meter_usage (
    day, meter_id, total_kwh_consumed_ac, avg_voltage, min_voltage, max_voltage, record_count
)
SELECT $1::date, meter_id, sum(kwh_consumed_ac), avg(voltage), min(voltage), max(voltage), count(*)
  FROM meter_readings_history
 WHERE ts >= $2 AND ts < $3
 GROUP BY meter_id
"""


@dataclass(frozen=True)
class DayResult:
    day: date
    rows: int
    status_counts: dict[str, int]
    flagged: list[tuple[str, str, float | None]]  # vehicle_id, status, ratio


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _lock_day(cur: Any, table: str, day: date) -> None:
    """Two runs materializing the same day take turns instead of colliding on the key."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext($1))", (f"{table}:{day.isoformat()}",))


def materialize_vehicle_day(conn: Connection, day: date, fault_threshold: float) -> DayResult:
    start, end = day_bounds(day)
    with conn.cursor() as cur:
        _lock_day(cur, "daily_vehicle_efficiency", day)
        cur.execute("DELETE FROM daily_vehicle_efficiency WHERE day = $1", (day,))
        cur.execute(_VEHICLE_DAY_SQL, (day, start, end, fault_threshold))
        crash_point("daily_before_commit")
        cur.execute(
            "SELECT status, count(*) FROM daily_vehicle_efficiency WHERE day = $1 GROUP BY 1",
            (day,),
        )
        counts = {status: int(n) for status, n in cur.fetchall()}
        cur.execute(
            "SELECT vehicle_id, status, efficiency_ratio FROM daily_vehicle_efficiency"
            " WHERE day = $1 AND status IN ('fault_suspected', 'implausible')"
            " ORDER BY efficiency_ratio, vehicle_id",
            (day,),
        )
        flagged = [(v, s, r) for v, s, r in cur.fetchall()]
    conn.commit()
    return DayResult(day, sum(counts.values()), counts, flagged)


def materialize_meter_day(conn: Connection, day: date) -> int:
    start, end = day_bounds(day)
    with conn.cursor() as cur:
        _lock_day(cur, "daily_meter_usage", day)
        cur.execute("DELETE FROM daily_meter_usage WHERE day = $1", (day,))
        cur.execute(_METER_DAY_SQL, (day, start, end))
        cur.execute("SELECT count(*) FROM daily_meter_usage WHERE day = $1", (day,))
        rows = int(cur.fetchone()[0])
    conn.commit()
    return rows


def days_to_refresh(
    conn: Connection, after_file_id: int, up_to_file_id: int | None = None
) -> list[date]:
    """UTC days whose daily rows are stale because of files loaded after `after_file_id`: the
    days their readings fall on, and for new correlations every day with readings of the newly
    paired vehicles or meters."""
    with conn.cursor() as cur:
        cur.execute(
            """
            WITH files AS (
                SELECT file_id, stream, days_touched FROM ingested_files
                 WHERE status = 'loaded' AND rows_loaded > 0 AND file_id > $1
                   AND ($2::bigint IS NULL OR file_id <= $2)
            ), new_pairs AS (
                SELECT c.meter_id, c.vehicle_id FROM meter_vehicle_correlation c
                 WHERE c.file_id IN (SELECT file_id FROM files WHERE stream = 'correlation')
            )
            SELECT DISTINCT day FROM (
                SELECT unnest(days_touched) AS day FROM files
                UNION ALL
                SELECT e.day FROM daily_vehicle_efficiency e
                 WHERE e.vehicle_id IN (SELECT vehicle_id FROM new_pairs)
                UNION ALL
                SELECT u.day FROM daily_meter_usage u
                 WHERE u.meter_id IN (SELECT meter_id FROM new_pairs)
            ) affected
             ORDER BY day
            """,
            (after_file_id, up_to_file_id),
        )
        days = [row[0] for row in cur.fetchall()]
    conn.rollback()
    return days


@dataclass(frozen=True)
class PendingDays:
    days: list[date]
    after_file_id: int
    up_to_file_id: int


def pending_days(conn: Connection) -> PendingDays:
    """Days made stale by files loaded since the daily watermark."""
    with conn.cursor() as cur:
        cur.execute("SELECT last_file_id FROM daily_analytics_watermark")
        after = int(cur.fetchone()[0])
        cur.execute("SELECT coalesce(max(file_id), 0) FROM ingested_files")
        newest = int(cur.fetchone()[0])
    conn.rollback()
    days = days_to_refresh(conn, after, newest) if newest > after else []
    return PendingDays(days, after, newest)


def advance_daily_watermark(conn: Connection, pending: PendingDays) -> None:
    """Record that the pending days were materialized (or durably requested). Never moves back."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE daily_analytics_watermark SET last_file_id = greatest(last_file_id, $1),"
            " updated_at = now()",
            (pending.up_to_file_id,),
        )
    conn.commit()
