"""Reconciliation of a run: the manifest's counts against what history and quarantine hold."""

from __future__ import annotations

from dataclasses import dataclass

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
        rows = cur.fetch_arrow_table().to_pylist()
        file_ids = [r["file_id"] for r in rows]
        starts = [r["min_ts"] for r in rows if r["min_ts"] is not None]
        ends = [r["max_ts"] for r in rows if r["max_ts"] is not None]
        in_history: dict[int, int] = {}
        # One pass for all the run's files (history has no index on file_id). Every row of a file
        # lies in the file's [min_ts, max_ts], so the run's range prunes to the touched days; a
        # run whose files had no valid rows has nothing to count.
        if file_ids and (starts or not stream.has_timestamp):
            # Within the run's time range every file is counted (other files' counts are
            # dropped below): a per-row test against the run's file ids costs more (0.56 s
            # instead of 0.81 s for a 7.2 M-row day).
            sql = f"SELECT file_id, count(*) FROM {stream.table} WHERE ts >= $1 AND ts <= $2"
            params: tuple = (min(starts), max(ends)) if starts else ()
            if not stream.has_timestamp:
                sql = f"SELECT file_id, count(*) FROM {stream.table} WHERE file_id = ANY($1)"
                params = (file_ids,)
            cur.execute(sql + " GROUP BY file_id", params)
            wanted = set(file_ids)
            in_history = {
                int(file_id): int(count)
                for file_id, count in cur.fetchall()
                if int(file_id) in wanted
            }
    conn.rollback()
    for row in rows:
        row["in_history"] = in_history.get(row["file_id"], 0)
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
