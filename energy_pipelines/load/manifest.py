"""The ingested_files manifest and the per-stream lock that make each file load exactly once."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from energy_pipelines.load.database import Connection

_LOCK_NAMESPACE = 0x656E_6572


def stream_lock_key(stream: str) -> int:
    # Stable across processes and Python versions (hash() is salted per process).
    return (_LOCK_NAMESPACE << 32) | zlib.crc32(stream.encode())


def lock_stream(cur: Any, stream: str) -> None:
    """Serialize writers of one stream until the transaction ends: duplicate and conflict checks
    against history are then exact, and a file cannot be loaded by two runs."""
    cur.execute("SELECT pg_advisory_xact_lock($1)", (stream_lock_key(stream),))


@dataclass(frozen=True)
class LoadedFile:
    file_id: int
    path: str


def find_loaded(cur: Any, stream: str, sha256: str) -> LoadedFile | None:
    cur.execute(
        "SELECT file_id, path FROM ingested_files"
        " WHERE stream = $1 AND sha256 = $2 AND status = 'loaded'",
        (stream, sha256),
    )
    row = cur.fetchone()
    return None if row is None else LoadedFile(file_id=row[0], path=row[1])


@dataclass
class ManifestRow:
    stream: str
    path: str
    sha256: str
    size_bytes: int
    status: str
    started_at: datetime
    run_id: str | None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    rows_conflicting: int = 0
    min_ts: datetime | None = None
    max_ts: datetime | None = None
    days_touched: list[date] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    error: str | None = None


def insert_manifest_row(cur: Any, row: ManifestRow) -> int:
    cur.execute(
        """
        INSERT INTO ingested_files (
            stream, path, sha256, size_bytes, status, rows_read, rows_loaded, rows_rejected,
            rows_duplicate, rows_conflicting, min_ts, max_ts, days_touched, extra_columns,
            error, started_at, run_id
        )
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                $13::text[]::date[], $14::text[], $15, $16, $17)
        RETURNING file_id
        """,
        (
            row.stream,
            row.path,
            row.sha256,
            row.size_bytes,
            row.status,
            row.rows_read,
            row.rows_loaded,
            row.rows_rejected,
            row.rows_duplicate,
            row.rows_conflicting,
            row.min_ts,
            row.max_ts,
            [d.isoformat() for d in row.days_touched],
            list(row.extra_columns),
            row.error,
            row.started_at,
            row.run_id,
        ),
    )
    return int(cur.fetchone()[0])


def update_counts(cur: Any, file_id: int, row: ManifestRow) -> None:
    cur.execute(
        """
        UPDATE ingested_files
           SET rows_read = $2, rows_loaded = $3, rows_rejected = $4, rows_duplicate = $5,
               rows_conflicting = $6, min_ts = $7, max_ts = $8, days_touched = $9::text[]::date[],
               extra_columns = $10::text[], finished_at = clock_timestamp()
         WHERE file_id = $1
        """,
        (
            file_id,
            row.rows_read,
            row.rows_loaded,
            row.rows_rejected,
            row.rows_duplicate,
            row.rows_conflicting,
            row.min_ts,
            row.max_ts,
            [d.isoformat() for d in row.days_touched],
            list(row.extra_columns),
        ),
    )


@dataclass(frozen=True)
class RunReport:
    """What a run did to its files: totals, and the rows worth printing."""

    files: int
    # Files not loaded, or loaded with rejected or conflicting rows.
    need_a_look: int
    totals: dict[str, int]
    listed: list[dict[str, Any]]


_COUNTS = ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate", "rows_conflicting")


def run_report(conn: Connection, run_id: str, list_all_up_to: int = 100) -> RunReport:
    """Every file of the run when it handled at most `list_all_up_to`, else the files that
    need a look (not loaded, or with rejected or conflicting rows), at most that many: a run of
    thousands of gateway files prints what matters, and the manifest keeps every file."""
    sums = ", ".join(f"coalesce(sum({c}), 0)::bigint" for c in _COUNTS)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {_NEEDS_A_LOOK}), {sums}"
            " FROM ingested_files WHERE run_id = $1",
            (run_id,),
        )
        files, look, *totals = cur.fetchone()
        cur.execute(
            f"SELECT *, {_NEEDS_A_LOOK} AS needs_a_look FROM ingested_files"
            f" WHERE run_id = $1 AND (NOT $2 OR {_NEEDS_A_LOOK})"
            " ORDER BY file_id LIMIT $3",
            (run_id, files > list_all_up_to, list_all_up_to),
        )
        listed = cur.fetch_arrow_table().to_pylist()
    conn.rollback()
    counts = dict(zip(_COUNTS, map(int, totals), strict=True))
    return RunReport(int(files), int(look), counts, listed)


_NEEDS_A_LOOK = (
    "(status <> 'loaded' OR rows_rejected > 0 OR rows_conflicting > 0 OR error IS NOT NULL)"
)


def find_loaded_many(cur: Any, stream: str, sha256s: list[str]) -> dict[str, LoadedFile]:
    """The loaded files of the stream with any of these contents, by sha256."""
    cur.execute(
        "SELECT sha256, file_id, path FROM ingested_files"
        " WHERE stream = $1 AND status = 'loaded' AND sha256 = ANY($2::text[])",
        (stream, sha256s),
    )
    return {sha: LoadedFile(file_id=int(i), path=p) for sha, i, p in cur.fetchall()}


def _row_json(row: ManifestRow) -> dict[str, Any]:
    return {
        "stream": row.stream,
        "path": row.path,
        "sha256": row.sha256,
        "size_bytes": row.size_bytes,
        "status": row.status,
        "rows_read": row.rows_read,
        "rows_loaded": row.rows_loaded,
        "rows_rejected": row.rows_rejected,
        "rows_duplicate": row.rows_duplicate,
        "rows_conflicting": row.rows_conflicting,
        "min_ts": row.min_ts.isoformat() if row.min_ts else None,
        "max_ts": row.max_ts.isoformat() if row.max_ts else None,
        "days_touched": [d.isoformat() for d in row.days_touched],
        "extra_columns": list(row.extra_columns),
        "error": row.error,
        "started_at": row.started_at.isoformat(),
        "run_id": row.run_id,
    }


_RECORD_COLUMNS = """
    stream text, path text, sha256 text, size_bytes bigint, status text, rows_read bigint,
    rows_loaded bigint, rows_rejected bigint, rows_duplicate bigint, rows_conflicting bigint,
    min_ts timestamptz, max_ts timestamptz, days_touched date[], extra_columns text[],
    error text, started_at timestamptz, run_id text, ordinal bigint
"""


def allocate_file_ids(cur: Any, count: int) -> list[int]:
    """`count` new file ids, ascending, drawn from the manifest's own identity sequence: a
    batch writes its rows under them first and inserts its manifest rows, counts and all,
    once those are known."""
    if count == 0:
        return []
    cur.execute(
        "SELECT nextval(pg_get_serial_sequence('ingested_files', 'file_id'))"
        " FROM generate_series(1, $1)",
        (count,),
    )
    return sorted(int(row[0]) for row in cur.fetchall())


def insert_manifest_rows(
    cur: Any, rows: list[ManifestRow], file_ids: list[int] | None = None
) -> list[int]:
    """Insert several manifest rows in one statement; their file_ids, in the rows' order
    (`file_ids` when given, from allocate_file_ids; new ones otherwise)."""
    if not rows:
        return []
    ordinals = file_ids if file_ids is not None else range(len(rows))
    records = [{**_row_json(row), "ordinal": n} for n, row in zip(ordinals, rows, strict=True)]
    # With ids of their own, the rows carry them (`ordinal`); else identity values are drawn
    # in insertion order, which follows `ordinal`.
    override = "OVERRIDING SYSTEM VALUE" if file_ids is not None else ""
    id_column = "file_id, " if file_ids is not None else ""
    id_value = "ordinal, " if file_ids is not None else ""
    cur.execute(
        f"""
        WITH inserted AS (
            INSERT INTO ingested_files (
                {id_column}stream, path, sha256, size_bytes, status, rows_read, rows_loaded,
                rows_rejected, rows_duplicate, rows_conflicting, min_ts, max_ts, days_touched,
                extra_columns, error, started_at, run_id, finished_at
            ) {override}
            SELECT {id_value}stream, path, sha256, size_bytes, status, rows_read, rows_loaded,
                   rows_rejected, rows_duplicate, rows_conflicting, min_ts, max_ts,
                   days_touched, extra_columns, error, started_at, run_id, clock_timestamp()
              FROM json_to_recordset($1::json) AS r({_RECORD_COLUMNS})
             ORDER BY ordinal
            RETURNING file_id
        )
        SELECT file_id FROM inserted ORDER BY file_id
        """,
        (json.dumps(records),),
    )
    return [int(row[0]) for row in cur.fetchall()]
