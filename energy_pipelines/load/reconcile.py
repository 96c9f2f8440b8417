"""Reconciliation of a run: the manifest's counts against what history and quarantine hold.
(rows_read = loaded + rejected + duplicate + conflicting holds by the manifest's own CHECK.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import polars as pl

from energy_pipelines.contract import Stream
from energy_pipelines.load.database import Connection

_MANIFEST_SQL = """
SELECT f.file_id, f.path, f.rows_loaded, f.rows_rejected, f.rows_conflicting, f.min_ts, f.max_ts,
       (SELECT count(DISTINCT r.row_number) FROM rejected_rows r
         WHERE r.file_id = f.file_id AND r.kind = 'invalid') AS in_quarantine_invalid,
       (SELECT count(*) FROM rejected_rows r
         WHERE r.file_id = f.file_id AND r.kind = 'conflicting') AS in_quarantine_conflicting
  FROM ingested_files f
 WHERE f.run_id = $1 AND f.stream = $2 AND f.status = 'loaded'
 ORDER BY f.file_id
"""


@dataclass(frozen=True)
class Reconciliation:
    files_checked: int
    files_not_reconciled: list[str]


def time_spans(files: pl.DataFrame, gap: timedelta = timedelta(hours=1)) -> list[tuple[Any, Any]]:
    """The files' [min_ts, max_ts] ranges merged where they overlap or lie less than `gap`
    apart: history is counted span by span, so one late file from weeks ago adds its own hours
    to the count, not the weeks between."""
    ranges = files.select("min_ts", "max_ts").drop_nulls().sort("min_ts").rows()
    spans: list[tuple[Any, Any]] = []
    for start, end in ranges:
        if spans and start - spans[-1][1] < gap:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def _history_counts(cur: Any, stream: Stream, files: pl.DataFrame) -> pl.DataFrame:
    """Rows per file_id in history for the run's files (history has no index on file_id, so
    rows are counted per time span: every row of a file lies in its [min_ts, max_ts]; counts of
    other files in the same hours are dropped by the caller's join)."""
    parts = [pl.DataFrame(schema={"file_id": pl.Int64, "in_history": pl.Int64})]
    if not stream.has_timestamp:
        sql = f"SELECT file_id, count(*) AS in_history FROM {stream.table} WHERE file_id = ANY($1)"
        cur.execute(sql + " GROUP BY file_id", (files["file_id"].to_list(),))
        return cur.fetch_polars()
    sql = (
        f"SELECT file_id, count(*) AS in_history FROM {stream.table}"
        " WHERE ts >= $1 AND ts <= $2 GROUP BY file_id"
    )
    for start, end in time_spans(files):
        cur.execute(sql, (start, end))
        parts.append(cur.fetch_polars())
    return pl.concat(parts, how="vertical_relaxed")


def reconcile_run(conn: Connection, stream: Stream, run_id: str) -> Reconciliation:
    """For each file the run loaded, history and quarantine hold exactly its loaded, rejected and
    conflicting rows (its counts add up to rows_read by the manifest's CHECK, so that sum is not
    tested here)."""
    with conn.cursor() as cur:
        cur.execute(_MANIFEST_SQL, (run_id, stream.name))
        files = cur.fetch_polars()
        in_history = _history_counts(cur, stream, files) if files.height else None
    conn.rollback()
    if in_history is None:
        return Reconciliation(files_checked=0, files_not_reconciled=[])
    counted = files.join(in_history, on="file_id", how="left", maintain_order="left").with_columns(
        pl.col("in_history").fill_null(0)
    )
    broken = counted.filter(
        (pl.col("in_history") != pl.col("rows_loaded"))
        | (pl.col("in_quarantine_invalid") != pl.col("rows_rejected"))
        | (pl.col("in_quarantine_conflicting") != pl.col("rows_conflicting"))
    )
    return Reconciliation(files_checked=files.height, files_not_reconciled=broken["path"].to_list())
