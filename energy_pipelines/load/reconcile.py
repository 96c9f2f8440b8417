"""Reconciliation of a run: the manifest's counts against what history and quarantine hold."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from energy_pipelines.contract import Stream
from energy_pipelines.load.database import Connection

_MANIFEST_SQL = """
SELECT f.file_id, f.path, f.rows_read, f.rows_loaded, f.rows_rejected, f.rows_duplicate,
       f.rows_conflicting, f.min_ts, f.max_ts,
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


def reconcile_run(conn: Connection, stream: Stream, run_id: str) -> Reconciliation:
    """For each file the run loaded: rows_read = loaded + rejected + duplicate + conflicting, and
    history and quarantine hold exactly the loaded, rejected and conflicting rows."""
    with conn.cursor() as cur:
        cur.execute(_MANIFEST_SQL, (run_id, stream.name))
        files = cur.fetch_polars()
        in_history = pl.DataFrame(schema={"file_id": pl.Int64, "in_history": pl.Int64})
        starts, ends = files["min_ts"].drop_nulls(), files["max_ts"].drop_nulls()
        # One pass for all the run's files (history has no index on file_id). Every row of a file
        # lies in the file's [min_ts, max_ts], so the run's range prunes to the touched days; a
        # run whose files had no valid rows has nothing to count.
        if files.height and (starts.len() or not stream.has_timestamp):
            # Within the run's time range every file is counted (other files' counts are
            # dropped by the join below): a per-row test against the run's file ids costs more
            # (0.56 s instead of 0.81 s for a 7.2 M-row day).
            sql = f"SELECT file_id, count(*) AS in_history FROM {stream.table}"
            if stream.has_timestamp:
                sql, params = sql + " WHERE ts >= $1 AND ts <= $2", (starts.min(), ends.max())
            else:
                sql, params = sql + " WHERE file_id = ANY($1)", (files["file_id"].to_list(),)
            cur.execute(sql + " GROUP BY file_id", params)
            in_history = cur.fetch_polars()
    conn.rollback()
    counted = files.join(in_history, on="file_id", how="left", maintain_order="left").with_columns(
        pl.col("in_history").fill_null(0)
    )
    broken = counted.filter(
        (
            pl.col("rows_read")
            != pl.col("rows_loaded")
            + pl.col("rows_rejected")
            + pl.col("rows_duplicate")
            + pl.col("rows_conflicting")
        )
        | (pl.col("in_history") != pl.col("rows_loaded"))
        | (pl.col("in_quarantine_invalid") != pl.col("rows_rejected"))
        | (pl.col("in_quarantine_conflicting") != pl.col("rows_conflicting"))
    )
    return Reconciliation(files_checked=files.height, files_not_reconciled=broken["path"].to_list())
