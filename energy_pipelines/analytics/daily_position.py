"""Where the daily tables stand: which loaded files every day they made stale was recomputed
after (sql/021, daily_refreshes).

A daily asset reads each stream's newest committed file id before it recomputes a day, and
records it when the day is done. A stream's daily watermark moves past a file only once every
day the file made stale has both daily tables recomputed after it, so the watermark says what
is done, never what was merely requested: a daily run that never happened (a sensor evaluation
lost, a run that failed) leaves its days stale, and the sensor asks for them again.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from energy_pipelines.load.database import Connection

# The daily job's assets: a day counts as recomputed after a file when both are.
DAILY_TABLES = ("daily_vehicle_efficiency", "daily_meter_usage")

Positions = dict[str, int]  # stream -> file id


def newest_file_ids(conn: Connection) -> Positions:
    """Per stream, the newest committed file id. Files of one stream commit in id order (its
    loads are serialized), so whatever reads history after this has seen every file up to it."""
    with conn.cursor() as cur:
        newest = _newest(cur)
    conn.rollback()
    return newest


def _newest(cur: Any) -> Positions:
    cur.execute(
        "SELECT w.stream, coalesce((SELECT max(f.file_id) FROM ingested_files f"
        "                            WHERE f.stream = w.stream"
        "                              AND f.file_id > w.last_file_id), w.last_file_id)"
        "  FROM daily_analytics_watermarks w"
    )
    return {stream: int(up_to) for stream, up_to in cur.fetchall()}


def daily_watermarks(conn: Connection) -> Positions:
    with conn.cursor() as cur:
        cur.execute("SELECT stream, last_file_id FROM daily_analytics_watermarks")
        marks = {stream: int(last) for stream, last in cur.fetchall()}
    conn.rollback()
    return marks


def record_day_refreshed(
    conn: Connection, day: date, table: str, positions: Positions, first_day: date
) -> None:
    """`table`'s rows of `day` are recomputed from every file up to `positions` (read before
    the recompute began); then each stream's watermark moves as far as that allows."""
    streams = sorted(positions)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO daily_refreshes (day, asset, stream, up_to_file_id)"
            " SELECT $1, $2, s, up_to FROM unnest($3::text[], $4::bigint[]) AS p(s, up_to)"
            " ON CONFLICT (day, stream, asset) DO UPDATE"
            "   SET up_to_file_id = greatest(daily_refreshes.up_to_file_id,"
            "                                excluded.up_to_file_id),"
            "       refreshed_at = now()",
            (day, table, streams, [positions[s] for s in streams]),
        )
    conn.commit()
    advance_over_refreshed(conn, first_day)


# Per stream, the (file, day) pairs that files after the watermark made stale: the days their
# readings fall on, and for new pairings every day of the paired vehicle or meter (as
# days_to_refresh in daily.py), with whether both daily tables were recomputed after the file.
_STALE_SQL = """
WITH w AS (
    SELECT w.stream, w.last_file_id AS after_id, p.up_to
      FROM daily_analytics_watermarks w
      JOIN unnest($1::text[], $2::bigint[]) AS p(stream, up_to) ON p.stream = w.stream
), files AS (
    SELECT f.file_id, f.stream, f.days_touched
      FROM ingested_files f JOIN w ON w.stream = f.stream
     WHERE f.file_id > w.after_id AND f.file_id <= w.up_to
       AND f.status = 'loaded' AND f.rows_loaded > 0
), stale AS (
    SELECT f.stream, f.file_id, d.day
      FROM files f CROSS JOIN LATERAL unnest(f.days_touched) AS d(day)
    UNION
    SELECT f.stream, f.file_id, e.day
      FROM files f JOIN meter_vehicle_correlation c ON c.file_id = f.file_id
      JOIN daily_vehicle_efficiency e ON e.vehicle_id = c.vehicle_id
    UNION
    SELECT f.stream, f.file_id, u.day
      FROM files f JOIN meter_vehicle_correlation c ON c.file_id = f.file_id
      JOIN daily_meter_usage u ON u.meter_id = c.meter_id
)
SELECT s.stream, s.file_id, s.day
  FROM stale s
 WHERE s.day >= $3
   AND (SELECT count(*) FROM daily_refreshes r
         WHERE r.day = s.day AND r.stream = s.stream AND r.up_to_file_id >= s.file_id
           AND r.asset = ANY($4::text[])) < cardinality($4::text[])
"""


# What callers need of the stale pairs, aggregated by the server: a gateway layout's run makes
# tens of thousands of (file, day) pairs, and fetching each costs the client far more.
_STALE_DAYS_SQL = f"SELECT DISTINCT day FROM ({_STALE_SQL}) stale ORDER BY day"
_FIRST_WAITING_SQL = f"SELECT stream, min(file_id) FROM ({_STALE_SQL}) stale GROUP BY stream"


def _stale_params(up_to: Positions, first_day: date) -> tuple[Any, ...]:
    streams = sorted(up_to)
    return streams, [up_to[s] for s in streams], first_day, list(DAILY_TABLES)


def days_not_refreshed(conn: Connection, up_to: Positions, first_day: date) -> list[date]:
    """Days that files after the watermark (up to `up_to`) made stale and that are not yet
    recomputed after them, in order. Days before the first daily partition never are."""
    with conn.cursor() as cur:
        cur.execute(_STALE_DAYS_SQL, _stale_params(up_to, first_day))
        days = [day for (day,) in cur.fetchall()]
    conn.rollback()
    return days


def advance_over_refreshed(conn: Connection, first_day: date) -> Positions:
    """Move each stream's watermark past every file whose stale days are all recomputed after
    it, up to the first file still waiting for a day (or to the newest file). Never back."""
    with conn.cursor() as cur:
        # One advance at a time: each sees what the others recorded before it.
        cur.execute("SELECT stream FROM daily_analytics_watermarks FOR UPDATE")
        cur.fetchall()
        newest = _newest(cur)
        cur.execute(_FIRST_WAITING_SQL, _stale_params(newest, first_day))
        waiting: Positions = {stream: int(file_id) for stream, file_id in cur.fetchall()}
        target = {s: waiting[s] - 1 if s in waiting else newest[s] for s in newest}
        streams = sorted(target)
        cur.execute(
            "UPDATE daily_analytics_watermarks w"
            "   SET last_file_id = p.up_to, updated_at = now()"
            "  FROM unnest($1::text[], $2::bigint[]) AS p(stream, up_to)"
            " WHERE p.stream = w.stream AND p.up_to > w.last_file_id",
            (streams, [target[s] for s in streams]),
        )
    conn.commit()
    return target
