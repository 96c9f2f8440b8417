"""What a history asset's materialization shows: counts, per-stage seconds (one number each, so
the asset's Plots tab charts them run after run), the per-file table and the rejection reasons."""

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import dagster as dg

from energy_pipelines.contract import Stream
from energy_pipelines.ingest import FileOutcome
from energy_pipelines.ingest.stream import StreamOutcomes
from energy_pipelines.ingest.streams import StreamLoad
from energy_pipelines.load.database import Connection

COUNT_FIELDS = ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate", "rows_conflicting")
# Where a file's time goes, summed over the run's files; "index" is the key builds of the days
# and hours loaded without one, once per run.
STAGES = ("read", "validate", "transform", "load", "index")

_LOGGED_FILES = 50
# Rows of the per-file table: files that need a look first.
_TABLE_FILES = 500
# Rows of the rejection reasons table: the most frequent first.
_REASONS_SHOWN = 20


def stage_key(stage: str) -> str:
    """The metadata key of a stage's seconds."""
    return f"{stage}_seconds"


def needs_a_look(outcome: FileOutcome) -> bool:
    m = outcome.manifest
    return m.status != "loaded" or bool(m.rows_rejected or m.rows_conflicting or m.error)


def _table_files(outcomes: Sequence[FileOutcome]) -> list[FileOutcome]:
    """The files the per-file table shows: those that need a look, then the others, at most
    _TABLE_FILES (a run of thousands of gateway files has them all in the manifest)."""
    ordered = [o for o in outcomes if needs_a_look(o)] + [
        o for o in outcomes if not needs_a_look(o)
    ]
    return ordered[:_TABLE_FILES]


# Outcome, counts and reason first, the path last: a long path must not push what happened to
# the file out of sight. Paths are the manifest's, relative to the landing root.
FILE_TABLE_COLUMNS = ("status", *COUNT_FIELDS, "error", "path")


def _relative(error: str | None, landing_root: Path) -> str:
    # An OS error names the file by its full path: shown relative, like the path column.
    return (error or "").replace(f"{landing_root}/", "")


def files_table(outcomes: Sequence[FileOutcome], landing_root: Path) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "status": o.manifest.status,
                    **{c: int(getattr(o.manifest, c)) for c in COUNT_FIELDS},
                    "error": _relative(o.manifest.error, landing_root),
                    "path": o.manifest.path,
                }
            )
            for o in _table_files(outcomes)
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn(
                    c,
                    "int" if c.startswith("rows_") else "string",
                    description="relative to the landing root" if c == "path" else None,
                )
                for c in FILE_TABLE_COLUMNS
            ]
        ),
    )


def stage_seconds(outcomes: Sequence[FileOutcome], index_seconds: float) -> dict[str, float]:
    """Seconds per stage over the run's files, then the run's key builds."""
    summed = {
        stage: sum(o.stage_seconds.get(stage, 0.0) for o in outcomes) for stage in STAGES[:-1]
    }
    return {**summed, "index": index_seconds}


def waits(outcomes: StreamOutcomes) -> dict[str, float]:
    """Seconds the run's batches waited: for locks in PostgreSQL, for their turn in the run."""
    return {
        "lock_wait": sum(o.stage_seconds.get("lock_wait", 0.0) for o in outcomes),
        "turn_wait": outcomes.turn_wait_seconds,
    }


class RejectionReason(NamedTuple):
    """One row of the rejection reasons table."""

    rows: int
    files: int
    kind: str  # invalid, conflicting, or file (quarantined whole)
    column: str
    rule: str


REASON_COLUMNS = (
    dg.TableColumn("rows", "int", description="rows rejected for this reason"),
    dg.TableColumn("files", "int"),
    dg.TableColumn("kind", "string", description="invalid, conflicting, or file (whole file)"),
    dg.TableColumn("column", "string"),
    dg.TableColumn("rule", "string", description="the rule broken, in words"),
)

# A row breaking several rules is counted once per rule. file_id is indexed (rejected_rows_file).
_REASONS_SQL = """
SELECT count(*) AS row_count, count(DISTINCT file_id) AS file_count, kind,
       coalesce(column_name, '') AS column_name, rule
  FROM rejected_rows
 WHERE file_id = ANY($1)
 GROUP BY kind, column_name, rule
 ORDER BY row_count DESC, kind, column_name, rule
 LIMIT $2
"""


def rejection_reasons(
    conn: Connection, outcomes: Sequence[FileOutcome], landing_root: Path
) -> list[RejectionReason]:
    """Why this run's rows and files were rejected, the most frequent reasons first: rows from
    the quarantine (rejected_rows), files quarantined whole from their manifest error."""
    reasons: list[RejectionReason] = []
    with_rows = [o.file_id for o in outcomes if o.file_id and needs_a_look(o)]
    if with_rows:
        with conn.cursor() as cur:
            cur.execute(_REASONS_SQL, (with_rows, _REASONS_SHOWN))
            reasons = [
                RejectionReason(int(rows), int(files), kind, column, rule)
                for rows, files, kind, column, rule in cur.fetchall()
            ]
        conn.rollback()
    whole: dict[str, list[FileOutcome]] = {}
    for o in outcomes:
        if o.manifest.status == "quarantined":
            whole.setdefault(_relative(o.manifest.error, landing_root), []).append(o)
    reasons += [
        RejectionReason(
            sum(int(o.manifest.rows_read) for o in files), len(files), "file", "", error
        )
        for error, files in whole.items()
    ]
    reasons.sort(key=lambda r: (-r.rows, -r.files, r.kind, r.column, r.rule))
    return reasons[:_REASONS_SHOWN]


def reasons_table(reasons: list[RejectionReason]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord(reason._asdict()) for reason in reasons],
        schema=dg.TableSchema(columns=list(REASON_COLUMNS)),
    )


def log_outcomes(
    log: dg.DagsterLogManager, stream: Stream, outcomes: Sequence[FileOutcome]
) -> None:
    # A log line is an event in Dagster's storage: one per file would cost more than loading
    # thousands of small gateway files. Files that need a look are logged (the first ones);
    # every file is in the manifest and in the per-file table.
    noteworthy = [o for o in outcomes if needs_a_look(o)]
    for o in noteworthy[:_LOGGED_FILES]:
        m = o.manifest
        log.info(
            f"{m.path}: {m.status}, read {m.rows_read}, loaded {m.rows_loaded}, "
            f"rejected {m.rows_rejected}, duplicate {m.rows_duplicate}, "
            f"conflicting {m.rows_conflicting}" + (f" ({m.error})" if m.error else "")
        )
    log.info(
        f"{stream.name}: {len(outcomes)} files, {len(outcomes) - len(noteworthy)} loaded clean"
        + (f", {len(noteworthy)} with rejects, conflicts or another outcome" if noteworthy else "")
    )


def materialization_metadata(
    load: StreamLoad, landing_root: Path, reasons: list[RejectionReason]
) -> dict[str, object]:
    outcomes, seconds = load.outcomes, load.seconds
    totals = {c: sum(int(getattr(o.manifest, c)) for o in outcomes) for c in COUNT_FIELDS}
    extra = sorted({c for o in outcomes for c in o.manifest.extra_columns})
    stages = stage_seconds(outcomes, outcomes.index_seconds)
    return {
        "dagster/row_count": load.total_loaded,
        "files": len(outcomes),
        "files_quarantined": sum(o.manifest.status == "quarantined" for o in outcomes),
        "files_skipped_duplicate": sum(o.manifest.status == "skipped_duplicate" for o in outcomes),
        **totals,
        "rows_per_second": dg.MetadataValue.float(
            round(totals["rows_read"] / seconds, 1) if seconds else 0.0
        ),
        "seconds": dg.MetadataValue.float(round(seconds, 3)),
        **{stage_key(s): dg.MetadataValue.float(round(float(v), 3)) for s, v in stages.items()},
        # Batches waiting in PostgreSQL for locks, and for earlier batches of their hours.
        **{
            stage_key(s): dg.MetadataValue.float(round(float(v), 3))
            for s, v in waits(outcomes).items()
        },
        "ignored_extra_columns": ", ".join(extra) or "none",
        "days_touched": ", ".join(
            sorted({d.isoformat() for o in outcomes for d in o.manifest.days_touched})
        )
        or "none",
        "rejection_reasons": reasons_table(reasons),
        "per_file": files_table(outcomes, landing_root),
        "per_file_rows_shown": min(len(outcomes), _TABLE_FILES),
        "preview": dg.MetadataValue.md(load.preview),
    }
