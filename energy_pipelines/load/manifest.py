"""The ingested_files manifest and the per-stream lock that make each file load exactly once."""

from __future__ import annotations

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


def manifest_rows_for_run(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM ingested_files WHERE run_id = $1 ORDER BY file_id", (run_id,))
        return cur.fetch_arrow_table().to_pylist()
