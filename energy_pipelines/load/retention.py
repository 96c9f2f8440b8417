"""Retention: drop whole day partitions of history older than N days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from energy_pipelines.contract import METER, VEHICLE
from energy_pipelines.load.database import Connection


def retention_cutoff(keep_days: int, today: date | None = None) -> date:
    """The first day kept: today and the `keep_days` days before it stay."""
    if keep_days < 0:
        raise ValueError("keep_days must be 0 or more")
    return (today or datetime.now(UTC).date()) - timedelta(days=keep_days)


def drop_old_partitions(conn: Connection, keep_days: int, today: date | None = None) -> list[str]:
    """Drop every day partition whose whole day is before the cutoff; return their names.

    Only whole partitions go: no row of a kept day is touched, and the manifest keeps its rows,
    so a file of a dropped day stays recorded as loaded (and is not loaded again)."""
    cutoff = retention_cutoff(keep_days, today)
    dropped: list[str] = []
    with conn.cursor() as cur:
        for stream in (METER, VEHICLE):
            cur.execute(
                "SELECT drop_day_partitions_before($1::regclass, $2)", (stream.table, cutoff)
            )
            dropped.extend(row[0] for row in cur.fetchall())
    conn.commit()
    return dropped
