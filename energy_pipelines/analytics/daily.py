"""Materialize one UTC day of daily_vehicle_efficiency and daily_meter_usage.

Each day is replaced atomically (DELETE + INSERT in one transaction) from the day's running
per-device totals that the loads keep (one row per device), so a day costs the same whatever
the size of history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from energy_pipelines.faults import crash_point
from energy_pipelines.load.database import Connection

# Each stream's day comes from its running per-device totals (sql/011), kept by the loads.
_VEHICLE_TOTALS_SQL = """
CREATE TEMP TABLE day_vehicle_totals ON COMMIT DROP AS
SELECT vehicle_id, kwh_delivered_dc AS dc, battery_temp_sum / readings AS temp, readings AS n
  FROM vehicle_daily_totals
 WHERE day = $1
"""

_METER_TOTALS_SQL = """
CREATE TEMP TABLE day_meter_totals ON COMMIT DROP AS
SELECT meter_id, kwh_consumed_ac AS ac, voltage_sum / readings AS avg_voltage,
       voltage_min AS min_voltage, voltage_max AS max_voltage, readings AS n
  FROM meter_daily_totals
 WHERE day = $1
"""

_VEHICLE_DAY_SQL = """
INSERT INTO daily_vehicle_efficiency (
    day, vehicle_id, total_kwh_delivered_dc, total_kwh_consumed_ac, efficiency_ratio,
    avg_battery_temp, vehicle_record_count, meter_record_count, meter_ids, shared_meter, status
)
WITH pairing AS (
    SELECT vehicle_id, meter_id,
           count(*) OVER (PARTITION BY meter_id) > 1 AS meter_is_shared
      FROM meter_vehicle_correlation
), paired AS (
    SELECT p.vehicle_id,
           array_agg(p.meter_id ORDER BY p.meter_id) AS meter_ids,
           bool_or(p.meter_is_shared) AS shared,
           coalesce(sum(m.ac), 0) AS ac,
           coalesce(sum(m.n), 0) AS n
      FROM pairing p LEFT JOIN pg_temp.day_meter_totals m USING (meter_id)
     GROUP BY p.vehicle_id
)
SELECT $1::date, v.vehicle_id, v.dc, p.ac,
       CASE WHEN p.ac > 0 THEN v.dc / p.ac END,
       v.temp, v.n, coalesce(p.n, 0), coalesce(p.meter_ids, '{}'), coalesce(p.shared, false),
       efficiency_status(p.vehicle_id IS NOT NULL, p.ac,
                         CASE WHEN p.ac > 0 THEN v.dc / p.ac END, $2)
  FROM pg_temp.day_vehicle_totals v LEFT JOIN paired p USING (vehicle_id)
"""

_METER_DAY_SQL = """
INSERT INTO daily_meter_usage (
    day, meter_id, total_kwh_consumed_ac, avg_voltage, min_voltage, max_voltage, record_count
)
SELECT $1::date, meter_id, ac, avg_voltage, min_voltage, max_voltage, n
  FROM pg_temp.day_meter_totals
"""


@dataclass(frozen=True)
class DayResult:
    day: date
    rows: int
    status_counts: dict[str, int]
    flagged: list[tuple[str, str, float | None]]  # vehicle_id, status, ratio


def _lock_day(cur: Any, table: str, day: date) -> None:
    """Two runs materializing the same day take turns instead of colliding on the key."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext($1))", (f"{table}:{day.isoformat()}",))


def materialize_vehicle_day(conn: Connection, day: date, fault_threshold: float) -> DayResult:
    with conn.cursor() as cur:
        _lock_day(cur, "daily_vehicle_efficiency", day)
        cur.execute("DELETE FROM daily_vehicle_efficiency WHERE day = $1", (day,))
        cur.execute(_VEHICLE_TOTALS_SQL, (day,))
        cur.execute(_METER_TOTALS_SQL, (day,))
        cur.execute(_VEHICLE_DAY_SQL, (day, fault_threshold))
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
    with conn.cursor() as cur:
        _lock_day(cur, "daily_meter_usage", day)
        cur.execute("DELETE FROM daily_meter_usage WHERE day = $1", (day,))
        cur.execute(_METER_TOTALS_SQL, (day,))
        cur.execute(_METER_DAY_SQL, (day,))
        cur.execute("SELECT count(*) FROM daily_meter_usage WHERE day = $1", (day,))
        rows = int(cur.fetchone()[0])
    conn.commit()
    return rows


def days_to_refresh(conn: Connection, ranges: dict[str, tuple[int, int]]) -> list[date]:
    """UTC days whose daily rows are stale because of files loaded in `ranges` (per stream,
    file ids after the first number up to the second): the days their readings fall on, and for
    new correlations every day with readings of the newly paired vehicles or meters."""
    streams = sorted(ranges)
    with conn.cursor() as cur:
        cur.execute(
            """
            WITH files AS (
                SELECT f.file_id, f.stream, f.days_touched
                  FROM ingested_files f
                  JOIN unnest($1::text[], $2::bigint[], $3::bigint[]) AS w(stream, after_id, up_to)
                    ON w.stream = f.stream
                 WHERE f.status = 'loaded' AND f.rows_loaded > 0
                   AND f.file_id > w.after_id AND f.file_id <= w.up_to
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
            (
                streams,
                [ranges[s][0] for s in streams],
                [ranges[s][1] for s in streams],
            ),
        )
        days = [row[0] for row in cur.fetchall()]
    conn.rollback()
    return days


@dataclass(frozen=True)
class PendingDays:
    days: list[date]
    # Per stream: (watermark, newest committed file id). Ids of one stream commit in order.
    ranges: dict[str, tuple[int, int]]

    @property
    def new_files(self) -> bool:
        return any(up_to > after for after, up_to in self.ranges.values())

    @property
    def position(self) -> str:
        """Where the refresh stands, for run keys: changes whenever any stream moves."""
        return "-".join(f"{s}{up_to}" for s, (_after, up_to) in sorted(self.ranges.items()))


def pending_days(conn: Connection) -> PendingDays:
    """Days made stale by files loaded since each stream's daily watermark."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT w.stream, w.last_file_id, coalesce(max(f.file_id), w.last_file_id)"
            "  FROM daily_analytics_watermarks w"
            "  LEFT JOIN ingested_files f ON f.stream = w.stream AND f.file_id > w.last_file_id"
            " GROUP BY w.stream, w.last_file_id"
        )
        ranges = {stream: (int(after), int(up_to)) for stream, after, up_to in cur.fetchall()}
    conn.rollback()
    pending = PendingDays([], ranges)
    return PendingDays(days_to_refresh(conn, ranges), ranges) if pending.new_files else pending


def advance_daily_watermark(conn: Connection, pending: PendingDays) -> None:
    """Record that the pending days were materialized (or durably requested). Never moves back."""
    streams = sorted(pending.ranges)
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE daily_analytics_watermarks w"
            "   SET last_file_id = greatest(w.last_file_id, p.up_to), updated_at = now()"
            "  FROM unnest($1::text[], $2::bigint[]) AS p(stream, up_to)"
            " WHERE p.stream = w.stream",
            (streams, [pending.ranges[s][1] for s in streams]),
        )
    conn.commit()
