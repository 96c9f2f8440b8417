"""Materialize one UTC day of daily_vehicle_efficiency and daily_meter_usage.

Each day is replaced atomically (DELETE + INSERT in one transaction) from the day's running
per-device hourly totals that the loads keep (24 rows per device), so a day costs the same
whatever the size of history. Efficiency is judged over paired intervals: an hour whose vehicle
and meters reported the same intervals counts whole; only hours where they differ are read
again from history, interval by interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from energy_pipelines.faults import crash_point
from energy_pipelines.load.database import Connection
from energy_pipelines.settings import EvidenceRules


# Each stream's day comes from its running per-device hourly totals (sql/014), kept by the
# loads; $1 and $2 bound the UTC day, $3 is the pairing cadence in minutes.
def _vehicle_hours_sql(bits: str) -> str:
    return f"""
CREATE TEMP TABLE day_vehicle_hours ON COMMIT DROP AS
SELECT vehicle_id, hour, kwh_delivered_dc AS dc, battery_temp_sum AS temp, readings AS n,
       {bits} AS bits
  FROM vehicle_hourly_totals
 WHERE hour >= $1 AND hour < $2
"""


def _meter_hours_sql(bits: str) -> str:
    return f"""
CREATE TEMP TABLE day_meter_hours ON COMMIT DROP AS
SELECT meter_id, hour, kwh_consumed_ac AS ac, voltage_sum, voltage_min, voltage_max,
       readings AS n, {bits} AS bits
  FROM meter_hourly_totals
 WHERE hour >= $1 AND hour < $2
"""


# Every hour of each vehicle that reported that day, beside its meters' hour, and how the two
# pair (hour_pairing(): none, whole or partial).
_VEHICLE_HOUR_PAIRING_SQL = """
CREATE TEMP TABLE day_vehicle_hour_pairing ON COMMIT DROP AS
WITH pairing AS (
    SELECT vehicle_id, meter_id, count(*) OVER (PARTITION BY vehicle_id) AS meters_paired
      FROM meter_vehicle_correlation
), meter_side AS (
    SELECT p.vehicle_id, m.hour, sum(m.ac) AS ac, sum(m.n) AS n, bit_and(m.bits) AS bits_and,
           bit_or(m.bits) AS bits_or, count(*) AS present, min(p.meters_paired) AS meters_paired
      FROM pairing p JOIN pg_temp.day_meter_hours m USING (meter_id)
     GROUP BY 1, 2
)
SELECT vehicle_id, hour, v.dc, v.temp, v.n, ms.ac, ms.n AS mn,
       hour_pairing(v.bits, ms.bits_and, ms.bits_or, ms.present, ms.meters_paired) AS pairing
  FROM pg_temp.day_vehicle_hours v FULL JOIN meter_side ms USING (vehicle_id, hour)
 WHERE vehicle_id IN (SELECT vehicle_id FROM pg_temp.day_vehicle_hours)
"""

# Hours whose devices reported different intervals: their readings, paired interval by interval.
# The day's bounds ($1, $2) are constants when planned, so only the day's partitions are read.
_PARTIAL_HOURS_SQL = """
CREATE TEMP TABLE day_partial_pairs ON COMMIT DROP AS
WITH partial AS (
    SELECT vehicle_id, hour FROM pg_temp.day_vehicle_hour_pairing WHERE pairing = 'partial'
), meters_paired AS (
    SELECT vehicle_id, count(*) AS n FROM meter_vehicle_correlation GROUP BY 1
), v AS (
    SELECT p.vehicle_id,
           date_bin(make_interval(mins => $3::integer), x.ts, '2000-01-01 00:00+00') AS i,
           sum(x.kwh_delivered_dc) AS dc
      FROM partial p
      JOIN vehicle_readings_history x
        ON x.vehicle_id = p.vehicle_id AND x.ts >= p.hour AND x.ts < p.hour + interval '1 hour'
     WHERE x.ts >= $1 AND x.ts < $2
     GROUP BY 1, 2
), m AS (
    SELECT p.vehicle_id,
           date_bin(make_interval(mins => $3::integer), x.ts, '2000-01-01 00:00+00') AS i,
           sum(x.kwh_consumed_ac) AS ac, count(DISTINCT x.meter_id) AS present
      FROM partial p
      JOIN meter_vehicle_correlation c USING (vehicle_id)
      JOIN meter_readings_history x
        ON x.meter_id = c.meter_id AND x.ts >= p.hour AND x.ts < p.hour + interval '1 hour'
     WHERE x.ts >= $1 AND x.ts < $2
     GROUP BY 1, 2
)
SELECT v.vehicle_id, sum(v.dc) AS dc, sum(m.ac) AS ac
  FROM v JOIN m USING (vehicle_id, i) JOIN meters_paired k USING (vehicle_id)
 WHERE m.present = k.n
 GROUP BY 1
"""

_VEHICLE_DAY_SQL = """
INSERT INTO daily_vehicle_efficiency (
    day, vehicle_id, total_kwh_delivered_dc, total_kwh_consumed_ac, efficiency_ratio,
    avg_battery_temp, vehicle_record_count, meter_record_count, meter_ids, shared_meter,
    paired_kwh_delivered_dc, paired_kwh_consumed_ac, paired_efficiency_ratio, energy_coverage,
    status
)
WITH pairing AS (
    SELECT vehicle_id, meter_id,
           count(*) OVER (PARTITION BY meter_id) > 1 AS meter_is_shared
      FROM meter_vehicle_correlation
), paired AS (
    SELECT vehicle_id, array_agg(meter_id ORDER BY meter_id) AS meter_ids,
           bool_or(meter_is_shared) AS shared
      FROM pairing
     GROUP BY vehicle_id
), totals AS (
    SELECT h.vehicle_id, sum(h.dc) AS dc, sum(h.temp) / sum(h.n) AS temp, sum(h.n) AS n,
           coalesce(sum(h.ac), 0) AS ac, coalesce(sum(h.mn), 0)::bigint AS mn,
           coalesce(sum(h.dc) FILTER (WHERE h.pairing = 'whole'), 0)
               + coalesce(min(pp.dc), 0) AS pdc,
           coalesce(sum(h.ac) FILTER (WHERE h.pairing = 'whole'), 0)
               + coalesce(min(pp.ac), 0) AS pac
      FROM pg_temp.day_vehicle_hour_pairing h
      LEFT JOIN pg_temp.day_partial_pairs pp USING (vehicle_id)
     GROUP BY h.vehicle_id
)
SELECT $1::date, t.vehicle_id, t.dc,
       CASE WHEN p.vehicle_id IS NOT NULL THEN t.ac END,
       CASE WHEN p.vehicle_id IS NOT NULL AND t.ac > 0 THEN t.dc / t.ac END,
       t.temp, t.n, t.mn, coalesce(p.meter_ids, '{}'), coalesce(p.shared, false),
       CASE WHEN p.vehicle_id IS NOT NULL THEN t.pdc END,
       CASE WHEN p.vehicle_id IS NOT NULL THEN t.pac END,
       CASE WHEN p.vehicle_id IS NOT NULL AND t.pac > 0 THEN t.pdc / t.pac END,
       CASE WHEN p.vehicle_id IS NOT NULL THEN energy_coverage(t.dc, t.ac, t.pdc, t.pac) END,
       evidence_status(p.vehicle_id IS NOT NULL, t.dc, t.ac, t.mn, t.pdc, t.pac, $2, $3)
  FROM totals t LEFT JOIN paired p USING (vehicle_id)
"""

_METER_DAY_SQL = """
INSERT INTO daily_meter_usage (
    day, meter_id, total_kwh_consumed_ac, avg_voltage, min_voltage, max_voltage, record_count
)
SELECT $1::date, meter_id, sum(ac), sum(voltage_sum) / sum(n), min(voltage_min),
       max(voltage_max), sum(n)
  FROM pg_temp.day_meter_hours
 GROUP BY meter_id
"""


def _bits(cadence_minutes: int) -> str:
    """The interval bitmap expression: the minute bitmap itself at a one-minute cadence (calling
    interval_bits() for each of a day's 240,000 device-hours costs about a second)."""
    return "minutes" if cadence_minutes == 1 else "interval_bits(minutes, $3::integer)"


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


@dataclass(frozen=True)
class DayResult:
    day: date
    rows: int
    status_counts: dict[str, int]
    flagged: list[tuple[str, str, float | None]]  # vehicle_id, status, ratio
    # Vehicles whose paired intervals hold too little energy to judge: vehicle_id, coverage.
    insufficient: list[tuple[str, float | None]]


def lock_day(cur: Any, table: str, day: date) -> None:
    """Two runs materializing the same day take turns instead of colliding on the key."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext($1))", (f"{table}:{day.isoformat()}",))


def materialize_vehicle_day(conn: Connection, day: date, rules: EvidenceRules) -> DayResult:
    start, end = _day_bounds(day)
    cadence = rules.cadence_minutes
    with conn.cursor() as cur:
        lock_day(cur, "daily_vehicle_efficiency", day)
        cur.execute("DELETE FROM daily_vehicle_efficiency WHERE day = $1", (day,))
        cur.execute(_vehicle_hours_sql(bits=_bits(cadence)), (start, end, cadence))
        cur.execute(_meter_hours_sql(bits=_bits(cadence)), (start, end, cadence))
        cur.execute(_VEHICLE_HOUR_PAIRING_SQL)
        cur.execute(_PARTIAL_HOURS_SQL, (start, end, cadence))
        cur.execute(_VEHICLE_DAY_SQL, (day, rules.min_paired_kwh, rules.fault_threshold))
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
        cur.execute(
            "SELECT vehicle_id, energy_coverage FROM daily_vehicle_efficiency"
            " WHERE day = $1 AND status = 'insufficient_data'"
            " ORDER BY energy_coverage NULLS FIRST, vehicle_id",
            (day,),
        )
        insufficient = [(v, c) for v, c in cur.fetchall()]
    conn.commit()
    return DayResult(day, sum(counts.values()), counts, flagged, insufficient)


def materialize_meter_day(conn: Connection, day: date) -> int:
    with conn.cursor() as cur:
        lock_day(cur, "daily_meter_usage", day)
        cur.execute("DELETE FROM daily_meter_usage WHERE day = $1", (day,))
        cur.execute(_meter_hours_sql(bits="minutes"), (*_day_bounds(day), 1))
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
