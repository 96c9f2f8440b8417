"""Reconciliation of a run: the manifest's counts against what history and quarantine hold."""

from __future__ import annotations

from dataclasses import dataclass

from energy_pipelines.contract import Stream
from energy_pipelines.load.database import Connection

_RECONCILE_SQL = """
SELECT f.path, f.rows_read, f.rows_loaded, f.rows_rejected, f.rows_duplicate, f.rows_conflicting,
       (SELECT count(*) FROM {table} h
         WHERE h.file_id = f.file_id{ts_range}) AS in_history,
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
    # The file's time range lets PostgreSQL count in its day partitions only.
    ts_range = " AND h.ts BETWEEN f.min_ts AND f.max_ts" if stream.has_timestamp else ""
    with conn.cursor() as cur:
        # Table and column names are contract constants; values travel as parameters.
        cur.execute(
            _RECONCILE_SQL.format(table=stream.table, ts_range=ts_range), (run_id, stream.name)
        )
        rows = cur.fetch_arrow_table().to_pylist()
    conn.rollback()
    broken = [
        r["path"]
        for r in rows
        if r["rows_read"]
        != r["rows_loaded"] + r["rows_rejected"] + r["rows_duplicate"] + r["rows_conflicting"]
        or r["in_history"] != r["rows_loaded"]
        or r["in_quarantine_invalid"] != r["rows_rejected"]
        or r["in_quarantine_conflicting"] != r["rows_conflicting"]
    ]
    return Reconciliation(files_checked=len(rows), files_not_reconciled=broken)
