"""The ingested_files manifest: with the loaders' locks (locks.py), what makes each file load
exactly once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from energy_pipelines.load.database import Connection


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
    # What the pipeline noticed about the file (ingested_file_notes), written with the row.
    notes: list[str] = field(default_factory=list)


def insert_manifest_row(cur: Any, row: ManifestRow) -> int:
    """The row's file_id. A rejected file recorded before (same stream, path and content: its
    move to quarantine failed) keeps its row: the manifest tells its story once."""
    earlier = _earlier_quarantined(cur, [row])[0]
    if earlier is not None:
        return earlier
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
    file_id = int(cur.fetchone()[0])
    _insert_notes(cur, [(file_id, note) for note in row.notes])
    return file_id


def _earlier_quarantined(cur: Any, rows: list[ManifestRow]) -> list[int | None]:
    """Per row: the file_id of the same rejection recorded before, or None."""
    wanted = [(n, r) for n, r in enumerate(rows) if r.status == "quarantined" and r.sha256 != ""]
    found: list[int | None] = [None] * len(rows)
    if not wanted:
        return found
    cur.execute(
        """
        SELECT w.ordinal, (SELECT min(f.file_id) FROM ingested_files f
                            WHERE f.stream = w.stream AND f.sha256 = w.sha256
                              AND f.path = w.path AND f.status = 'quarantined')
          FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
               AS w(ordinal, stream, sha256, path)
        """,
        (
            [n for n, _ in wanted],
            [r.stream for _, r in wanted],
            [r.sha256 for _, r in wanted],
            [r.path for _, r in wanted],
        ),
    )
    for ordinal, file_id in cur.fetchall():
        found[int(ordinal)] = None if file_id is None else int(file_id)
    return found


def _insert_notes(cur: Any, notes: list[tuple[int, str]]) -> None:
    if notes:
        cur.execute(
            "INSERT INTO ingested_file_notes (file_id, note)"
            " SELECT * FROM unnest($1::bigint[], $2::text[])",
            ([i for i, _ in notes], [n for _, n in notes]),
        )


def record_file_note(conn: Connection, file_id: int, note: str) -> None:
    """A note observed after the file's transaction committed, in a transaction of its own."""
    with conn.cursor() as cur:
        _insert_notes(cur, [(file_id, note)])
    conn.commit()


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
            " FROM ingested_files f WHERE run_id = $1",
            (run_id,),
        )
        files, look, *totals = cur.fetchone()
        cur.execute(
            f"SELECT f.*, {_NEEDS_A_LOOK} AS needs_a_look,"
            " array(SELECT n.note FROM ingested_file_notes n"
            "       WHERE n.file_id = f.file_id ORDER BY n.noted_at) AS notes"
            f" FROM ingested_files f WHERE f.run_id = $1 AND (NOT $2 OR {_NEEDS_A_LOOK})"
            " ORDER BY f.file_id LIMIT $3",
            (run_id, files > list_all_up_to, list_all_up_to),
        )
        listed = cur.fetch_arrow_table().to_pylist()
    conn.rollback()
    counts = dict(zip(_COUNTS, map(int, totals), strict=True))
    return RunReport(int(files), int(look), counts, listed)


# A file with notes (a clock ahead, a change after its load) needs a look too.
_NEEDS_A_LOOK = (
    "(status <> 'loaded' OR rows_rejected > 0 OR rows_conflicting > 0 OR error IS NOT NULL"
    " OR EXISTS (SELECT 1 FROM ingested_file_notes n WHERE n.file_id = f.file_id))"
)


def find_loaded_many(cur: Any, stream: str, sha256s: list[str]) -> dict[str, LoadedFile]:
    """The loaded files of the stream with any of these contents, by sha256."""
    cur.execute(
        "SELECT sha256, file_id, path FROM ingested_files"
        " WHERE stream = $1 AND status = 'loaded' AND sha256 = ANY($2::text[])",
        (stream, sha256s),
    )
    return {sha: LoadedFile(file_id=int(i), path=p) for sha, i, p in cur.fetchall()}


# A batch's manifest rows travel as one array per column (the rows of a gateway layout's batch
# number thousands; a JSON object per row cost the client more than the insert). Timestamps as
# ISO text, days as array literals, extra columns (names from the file) as JSON.
_MANIFEST_ARRAYS = """
    unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
           $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::text[],
           $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[])
        AS r(ordinal, stream, path, sha256, size_bytes, status, rows_read, rows_loaded,
             rows_rejected, rows_duplicate, rows_conflicting, min_ts, max_ts, days, extra,
             error, started_at, run_id)
"""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _manifest_arrays(rows: list[ManifestRow], ordinals: list[int]) -> pa.RecordBatch:
    text, whole = pa.string(), pa.int64()
    columns: list[tuple[list[Any], pa.DataType]] = [
        (ordinals, whole),
        ([r.stream for r in rows], text),
        ([r.path for r in rows], text),
        ([r.sha256 for r in rows], text),
        ([r.size_bytes for r in rows], whole),
        ([r.status for r in rows], text),
        ([r.rows_read for r in rows], whole),
        ([r.rows_loaded for r in rows], whole),
        ([r.rows_rejected for r in rows], whole),
        ([r.rows_duplicate for r in rows], whole),
        ([r.rows_conflicting for r in rows], whole),
        ([_iso(r.min_ts) for r in rows], text),
        ([_iso(r.max_ts) for r in rows], text),
        (["{" + ",".join(d.isoformat() for d in r.days_touched) + "}" for r in rows], text),
        ([json.dumps(r.extra_columns) if r.extra_columns else "[]" for r in rows], text),
        ([r.error for r in rows], text),
        ([r.started_at.isoformat() for r in rows], text),
        ([r.run_id for r in rows], text),
    ]
    return pa.record_batch(
        [pa.array([values], pa.list_(kind)) for values, kind in columns],
        names=[f"p{n}" for n in range(1, len(columns) + 1)],
    )


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
    # As one Arrow column: a batch draws thousands of ids, and a Python row each costs more.
    return sorted(cur.fetch_arrow_table().column(0).to_pylist())


def insert_manifest_rows(
    cur: Any, rows: list[ManifestRow], file_ids: list[int] | None = None
) -> list[int]:
    """Insert several manifest rows in one statement; their file_ids, in the rows' order:
    `file_ids` when given (loaded files, from allocate_file_ids), else new ones, except that a
    rejection recorded before keeps its row (insert_manifest_row)."""
    if not rows:
        return []
    if file_ids is not None:
        ids = _insert_new_rows(cur, rows, file_ids)
    else:
        earlier = _earlier_quarantined(cur, rows)
        new = [row for row, known in zip(rows, earlier, strict=True) if known is None]
        inserted = iter(_insert_new_rows(cur, new))
        ids = [next(inserted) if known is None else known for known in earlier]
    _insert_notes(cur, [(i, note) for i, row in zip(ids, rows, strict=True) for note in row.notes])
    return ids


def _insert_new_rows(
    cur: Any, rows: list[ManifestRow], file_ids: list[int] | None = None
) -> list[int]:
    if not rows:
        return []
    ordinals = list(file_ids) if file_ids is not None else list(range(len(rows)))
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
                   rows_rejected, rows_duplicate, rows_conflicting, min_ts::timestamptz,
                   max_ts::timestamptz, days::date[],
                   ARRAY(SELECT json_array_elements_text(extra::json)), error,
                   started_at::timestamptz, run_id, clock_timestamp()
              FROM {_MANIFEST_ARRAYS}
             ORDER BY ordinal
            RETURNING file_id
        )
        SELECT file_id FROM inserted ORDER BY file_id
        """,
        _manifest_arrays(rows, ordinals),
    )
    return cur.fetch_arrow_table().column(0).to_pylist()
