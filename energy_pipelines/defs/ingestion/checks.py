"""Reconciliation: every row of every file this run handled is accounted for."""

import dagster as dg

from energy_pipelines.contract import STREAM_ORDER, Stream
from energy_pipelines.defs.ingestion.assets import HISTORY_ASSETS
from energy_pipelines.defs.resources import EnergyStorage

# Per file: the manifest's counts against what history and quarantine really hold.
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
"""


def build_reconcile_check(stream: Stream) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=HISTORY_ASSETS[stream.name],
        name="rows_reconcile",
        description=(
            "For each file of the run: rows_read = loaded + rejected + duplicate + conflicting, "
            "and history and quarantine hold exactly the loaded, rejected and conflicting rows."
        ),
        blocking=True,
    )
    def rows_reconcile(
        context: dg.AssetCheckExecutionContext, energy: EnergyStorage
    ) -> dg.AssetCheckResult:
        # The file's time range lets PostgreSQL count in its day partitions only.
        ts_range = " AND h.ts BETWEEN f.min_ts AND f.max_ts" if stream.has_timestamp else ""
        sql = _RECONCILE_SQL.format(table=stream.table, ts_range=ts_range)
        with energy.connection() as conn, conn.cursor() as cur:
            cur.execute(sql, (context.run_id, stream.name))
            rows = cur.fetch_arrow_table().to_pylist()
        broken = [
            r["path"]
            for r in rows
            if r["rows_read"]
            != r["rows_loaded"] + r["rows_rejected"] + r["rows_duplicate"] + r["rows_conflicting"]
            or r["in_history"] != r["rows_loaded"]
            or r["in_quarantine_invalid"] != r["rows_rejected"]
            or r["in_quarantine_conflicting"] != r["rows_conflicting"]
        ]
        return dg.AssetCheckResult(
            passed=not broken,
            metadata={"files_checked": len(rows), "files_not_reconciled": ", ".join(broken)},
        )

    return rows_reconcile


RECONCILE_CHECKS = [build_reconcile_check(stream) for stream in STREAM_ORDER]
