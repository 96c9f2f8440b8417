"""One file's path through the stages: landing -> validate -> transform -> load.

Reading, validation and transformation happen before any lock is taken; the writes of a file
(history rows, quarantined rows, manifest row) then commit in one transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from energy_pipelines.analytics.quality_hours_db import add_hour_quality
from energy_pipelines.contract import Stream
from energy_pipelines.faults import crash_point
from energy_pipelines.hot_status.refresh import CANDIDATE_TABLES, write_status_candidates
from energy_pipelines.landing.discover import LandingFile, find_waiting_files, sha256_of
from energy_pipelines.landing.errors import FileRejected, first_line, printable
from energy_pipelines.landing.read import (
    ROW_NUMBER,
    RawFile,
    iter_landing_chunks,
    read_landing_file,
)
from energy_pipelines.load.after_commit import archive_loaded, quarantine_rejected
from energy_pipelines.load.database import Connection
from energy_pipelines.load.errors import blames_the_file
from energy_pipelines.load.history import (
    add_hourly_totals,
    finish_new_tables,
    with_file_ids,
    write_history,
    write_rejected_rows,
)
from energy_pipelines.load.manifest import (
    ManifestRow,
    find_loaded,
    insert_manifest_row,
    lock_stream,
    update_counts,
)
from energy_pipelines.settings import FileLimits, Settings
from energy_pipelines.transform.readings import (
    DeduplicatedRows,
    EarlierRows,
    deduplicate_within_file,
    hourly_totals,
    to_staging_table,
)
from energy_pipelines.validate.rules import raw_values_json, validate_rows

log = logging.getLogger(__name__)


class FileChanged(Exception):
    """The file changed after it was listed: a writer is still at it. Left for the next run."""


@dataclass
class FileOutcome:
    manifest: ManifestRow
    file_id: int | None
    moved_to: Path | None
    # True when the file had been loaded by an earlier run that stopped before moving it.
    healed: bool = False
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class PreparedFile:
    """A file read, validated and transformed: everything the load needs, no database yet."""

    raw: RawFile
    unique: pl.DataFrame  # the rows to write: one per key, typed
    staged: pa.Table  # the same rows in key order with exact column types
    rejects: pl.DataFrame  # row_number, column_name, kind, rule, first_row (conflicts in file)
    rows_rejected: int
    duplicates_in_file: int
    conflicts_in_file: int
    ts_range: tuple[datetime, datetime] | None
    days: list


def prepare_file(
    file: LandingFile, stream: Stream, settings: Settings, ingested_at: datetime
) -> tuple[PreparedFile, dict[str, float]]:
    started = time.perf_counter()
    raw = read_landing_file(file, stream, settings.file_limits)
    read_seconds = time.perf_counter() - started
    prepared, timings = prepare_rows(raw, stream, settings, ingested_at)
    return prepared, {"read": read_seconds, **timings}


def prepare_rows(
    raw: RawFile,
    stream: Stream,
    settings: Settings,
    ingested_at: datetime,
    earlier: EarlierRows | None = None,
) -> tuple[PreparedFile, dict[str, float]]:
    """Validate and transform rows read from a file (or one chunk of it: `earlier` then holds
    the rows kept from the file's earlier chunks)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    validated = validate_rows(raw, stream, settings.limits, ingested_at)
    timings["validate"] = time.perf_counter() - started

    started = time.perf_counter()
    deduplicated = deduplicate_within_file(validated.valid, stream)
    if earlier is not None:
        repeats = earlier.drop_repeats(deduplicated.unique)
        deduplicated = DeduplicatedRows(
            unique=repeats.unique,
            duplicate_count=deduplicated.duplicate_count + repeats.duplicate_count,
            conflicts=pl.concat([deduplicated.conflicts, repeats.conflicts]),
        )
    unique = deduplicated.unique
    staged = to_staging_table(unique, stream, deduplicated.in_key_order)
    invalid = validated.rejects.with_columns(
        pl.lit("invalid").alias("kind"), pl.lit(None, pl.Int64).alias("first_row")
    )
    in_file_conflicts = deduplicated.conflicts.with_columns(
        pl.lit(None, pl.String).alias("column_name"),
        pl.lit("conflicting").alias("kind"),
        pl.format(
            "same key as row {} of this file with different values; the first row is kept",
            pl.col("first_row"),
        ).alias("rule"),
    ).select(ROW_NUMBER, "column_name", "rule", "kind", "first_row")
    ts_range = None
    days: list = []
    if stream.has_timestamp and unique.height:
        ts_range = (unique["ts"].min(), unique["ts"].max())
        days = unique["ts"].dt.date().unique().sort().to_list()
    timings["transform"] = time.perf_counter() - started
    prepared = PreparedFile(
        raw=raw,
        unique=unique,
        staged=staged,
        rejects=pl.concat([invalid, in_file_conflicts]),
        rows_rejected=validated.rejected_row_count,
        duplicates_in_file=deduplicated.duplicate_count,
        conflicts_in_file=deduplicated.conflicts.height,
        ts_range=ts_range,  # type: ignore[arg-type]
        days=days,
    )
    return prepared, timings


def history_conflict_rejects(conflicts_with_history: pl.DataFrame) -> pl.DataFrame:
    """Rows whose key history holds with other values, as quarantine rows (row_number,
    column_name, rule, kind, stored_values)."""
    return conflicts_with_history.select(
        pl.col(ROW_NUMBER).cast(pl.Int64),
        pl.lit(None, pl.String).alias("column_name"),
        pl.lit(
            "a reading with the same key and different values is already stored; "
            "the stored reading is kept"
        ).alias("rule"),
        pl.lit("conflicting").alias("kind"),
        pl.col("stored_values"),
    )


def _rejected_rows_frame(
    prepared: PreparedFile, conflicts_with_history: pl.DataFrame, file: LandingFile, file_id: int
) -> pl.DataFrame:
    history_conflicts = history_conflict_rejects(conflicts_with_history)
    rejected = pl.concat(
        [
            prepared.rejects.drop("first_row").with_columns(
                pl.lit(None, pl.String).alias("stored_values")
            ),
            history_conflicts,
        ]
    )
    raw_json = raw_values_json(prepared.raw, rejected[ROW_NUMBER])
    return rejected.join(raw_json, on=ROW_NUMBER, how="left").select(
        pl.lit(file_id, pl.Int64).alias("file_id"),
        pl.lit(file.stream).alias("stream"),
        pl.lit(file.relative_path).alias("source_path"),
        ROW_NUMBER,
        "column_name",
        "kind",
        "rule",
        "raw_values",
        "stored_values",
    )


def _manifest_for(
    file: LandingFile, stream: Stream, sha256: str, run_id: str | None, started_at: datetime
) -> ManifestRow:
    return ManifestRow(
        stream=stream.name,
        path=file.relative_path,
        sha256=sha256,
        size_bytes=file.size_bytes,
        status="loaded",
        started_at=started_at,
        run_id=run_id,
        notes=file.notes,
    )


@dataclass(frozen=True)
class Preparation:
    """prepare_file's result, or why the whole file is rejected."""

    prepared: PreparedFile | None
    timings: dict[str, float]
    error: str | None


def prepare_or_reject(file: LandingFile, stream: Stream, settings: Settings) -> Preparation:
    try:
        prepared, timings = prepare_file(file, stream, settings, datetime.now(UTC))
    except FileRejected as rejected:
        return Preparation(None, {}, rejected.reason)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as failure:  # Polars panics derive from BaseException
        log.exception("%s could not be parsed; quarantined", file.relative_path)
        reason = printable(f"the file could not be parsed: {first_line(failure)[:500]}")
        return Preparation(None, {}, reason)
    return Preparation(prepared, timings, None)


def ingest_file(
    conn: Connection,
    file: LandingFile,
    stream: Stream,
    settings: Settings,
    run_id: str | None,
    ahead: Future[Preparation] | None = None,
) -> FileOutcome:
    """Load one file exactly once. `ahead`: its preparation, started while the previous file
    was loading."""
    started_wall = time.perf_counter()
    started_at = datetime.now(UTC)
    try:
        sha256 = sha256_of(file.path)
    except PermissionError:
        return _quarantine_whole_file(
            conn,
            file,
            stream,
            settings,
            run_id,
            "the file cannot be read (permission denied): let the pipeline's user read it",
            sha256="",
        )
    if not file.unchanged():
        raise FileChanged(file.relative_path)
    manifest = _manifest_for(file, stream, sha256, run_id, started_at)

    with conn.cursor() as cur:
        already = find_loaded(cur, stream.name, sha256)
    conn.rollback()
    prepared: PreparedFile | None = None
    timings: dict[str, float] = {}
    if already is None and read_in_chunks(file, settings.file_limits):
        with _LARGE_FILE_SLOT:
            return _ingest_in_chunks(conn, file, stream, settings, run_id, manifest)
    if already is None:
        preparation = (
            ahead.result() if ahead is not None else prepare_or_reject(file, stream, settings)
        )
        prepared, timings = preparation.prepared, preparation.timings
        if preparation.error is not None:
            manifest.status, manifest.error = "quarantined", preparation.error
        if not file.unchanged():
            raise FileChanged(file.relative_path)

    load_started = time.perf_counter()
    with conn.cursor() as cur:
        lock_stream(cur, stream.name)
        # Checked again under the lock: another run may have loaded the same content meanwhile.
        already = find_loaded(cur, stream.name, sha256)
        if already is not None:
            healed = already.path == file.relative_path
            file_id = already.file_id
            if not healed:
                manifest.status = "skipped_duplicate"
                manifest.error = f"same content as {already.path}, loaded as file {file_id}"
                file_id = insert_manifest_row(cur, manifest)
            conn.commit()
            moved = archive_loaded(conn, file, file_id, settings.landing_dir)
            if healed:
                manifest.status = "loaded"
            return FileOutcome(manifest, file_id, moved, healed=healed)
        if prepared is None:
            file_id = insert_manifest_row(cur, manifest)
            conn.commit()
            moved = quarantine_rejected(file, settings.landing_dir, manifest.error or "", sha256)
            return FileOutcome(manifest, file_id, moved)

        manifest.extra_columns = prepared.raw.extra_columns
        if prepared.ts_range is not None:
            manifest.min_ts, manifest.max_ts = prepared.ts_range
        manifest.days_touched = prepared.days
        file_id = insert_manifest_row(cur, manifest)
        counts = _write_prepared(cur, stream, prepared, file, file_id)
        return _commit_file(
            conn,
            cur,
            file,
            settings,
            manifest,
            file_id,
            counts,
            started_wall,
            timings,
            load_started,
        )


def _commit_file(
    conn: Connection,
    cur: Any,
    file: LandingFile,
    settings: Settings,
    manifest: ManifestRow,
    file_id: int,
    counts: RowCounts,
    started_wall: float,
    timings: dict[str, float],
    load_started: float | None = None,
) -> FileOutcome:
    """End a file's transaction: the counts last, together (the table's rows_reconcile
    constraint checks their sum), the file unchanged since it was hashed, commit, archive."""
    counts.apply_to(manifest)
    update_counts(cur, file_id, manifest)
    crash_point("before_commit")
    if not file.unchanged():
        # What was parsed may not be what the manifest's hash describes.
        conn.rollback()
        raise FileChanged(file.relative_path)
    conn.commit()
    if load_started is not None:
        timings["load"] = time.perf_counter() - load_started
    crash_point("after_commit")
    moved = archive_loaded(conn, file, file_id, settings.landing_dir)
    return FileOutcome(
        manifest,
        file_id,
        moved,
        seconds=time.perf_counter() - started_wall,
        stage_seconds=timings,
    )


@dataclass
class RowCounts:
    read: int = 0
    loaded: int = 0
    rejected: int = 0
    duplicate: int = 0
    conflicting: int = 0

    def add(self, other: RowCounts) -> None:
        for name in ("read", "loaded", "rejected", "duplicate", "conflicting"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def apply_to(self, manifest: ManifestRow) -> None:
        manifest.rows_read, manifest.rows_loaded = self.read, self.loaded
        manifest.rows_rejected, manifest.rows_duplicate = self.rejected, self.duplicate
        manifest.rows_conflicting = self.conflicting


def _write_prepared(
    cur: Any, stream: Stream, prepared: PreparedFile, file: LandingFile, file_id: int
) -> RowCounts:
    """Write prepared rows (a file, or a chunk of one) in the file's transaction."""
    staged = with_file_ids(prepared.staged, file_id)
    written = write_history(cur, stream, staged, prepared.ts_range)
    if stream.name in CANDIDATE_TABLES:
        inserted = (
            prepared.unique
            if written.fast_path
            else prepared.unique.filter(~pl.col(ROW_NUMBER).is_in(written.existing_rows))
        )
        write_status_candidates(cur, stream, inserted, file_id)
        add_hourly_totals(cur, stream, hourly_totals(inserted, stream))
        add_hour_quality(cur, stream, inserted)
    crash_point("after_history_insert")
    write_rejected_rows(cur, _rejected_rows_frame(prepared, written.conflicts, file, file_id))
    return RowCounts(
        read=prepared.raw.frame.height,
        loaded=written.loaded,
        rejected=prepared.rows_rejected,
        duplicate=prepared.duplicates_in_file + written.duplicate,
        conflicting=prepared.conflicts_in_file + written.conflicts.height,
    )


def estimated_rows(file: LandingFile) -> int:
    """The file's rows as its Parquet footer claims them, or an estimate for text files (about
    40 bytes a CSV row; gzip shrinks readings about 4 times). A footer that cannot be read
    counts as no rows: the reader says what is wrong with the file."""
    if file.format == "parquet":
        try:
            return pq.ParquetFile(file.path).metadata.num_rows
        except Exception:
            return 0
    return file.size_bytes * (4 if file.format == "csv.gz" else 1) // 40


def read_in_chunks(file: LandingFile, limits: FileLimits) -> bool:
    """Whether the file may hold more than one chunk of rows (an estimate for text files; both
    paths load the same rows)."""
    return estimated_rows(file) > limits.stream_above_rows


# Streams load on parallel threads; a large file's chunk state (a reader reading ahead, the
# kept rows of earlier chunks) is what bounds a process's memory, so one is loaded at a time.
_LARGE_FILE_SLOT = threading.BoundedSemaphore(1)


def _ingest_in_chunks(
    conn: Connection,
    file: LandingFile,
    stream: Stream,
    settings: Settings,
    run_id: str | None,
    manifest: ManifestRow,
) -> FileOutcome:
    """A large file, read, validated and written chunk by chunk inside ONE transaction, so
    memory follows the chunk size. The rows kept from earlier chunks are remembered compactly
    to find keys repeated across chunks (EarlierRows)."""
    started_wall = time.perf_counter()
    timings = dict.fromkeys(("read", "validate", "transform", "load"), 0.0)
    counts = RowCounts()
    earlier = EarlierRows(stream)
    days: set = set()
    with conn.cursor() as cur:
        lock_stream(cur, stream.name)
        if find_loaded(cur, stream.name, manifest.sha256) is not None:
            conn.rollback()  # loaded by another run meanwhile: the usual path records it
            return ingest_file(conn, file, stream, settings, run_id)
        file_id = insert_manifest_row(cur, manifest)
        limits = settings.file_limits
        chunks = iter_landing_chunks(file, stream, limits, limits.chunk_rows)
        try:
            while True:
                started = time.perf_counter()
                raw = next(chunks, None)
                timings["read"] += time.perf_counter() - started
                if raw is None:
                    break
                prepared, chunk_timings = prepare_rows(
                    raw, stream, settings, manifest.started_at, earlier
                )
                for stage, seconds in chunk_timings.items():
                    timings[stage] += seconds
                started = time.perf_counter()
                counts.add(_write_prepared(cur, stream, prepared, file, file_id))
                timings["load"] += time.perf_counter() - started
                earlier.add(prepared.unique)
                manifest.extra_columns = raw.extra_columns
                days.update(prepared.days)
                if prepared.ts_range is not None:
                    low, high = prepared.ts_range
                    manifest.min_ts = min(low, manifest.min_ts or low)
                    manifest.max_ts = max(high, manifest.max_ts or high)
        except FileRejected as rejected:
            conn.rollback()
            return _quarantine_whole_file(
                conn, file, stream, settings, run_id, rejected.reason, manifest.sha256
            )
        manifest.days_touched = sorted(days)
        return _commit_file(
            conn, cur, file, settings, manifest, file_id, counts, started_wall, timings
        )


def ingest_stream(
    conn: Connection,
    stream: Stream,
    settings: Settings,
    run_id: str | None,
    only_paths: list[str] | None = None,
) -> StreamOutcomes:
    """Process the stream's waiting files (or only the listed landing-relative paths), then
    index and attach the new days and hours they were COPYed into."""
    # A run drains what it finds: batches bound each transaction, not the run.
    files = find_waiting_files(settings.landing_dir, stream, settings.settle_seconds)
    if only_paths is not None:
        wanted = set(only_paths)
        files = [f for f in files if f.relative_path in wanted]
    outcomes = StreamOutcomes()
    _ingest_files(conn, files, stream, settings, run_id, outcomes)
    if stream.has_timestamp:
        started = time.perf_counter()
        _finish_new_tables(conn, stream)
        outcomes.index_seconds = time.perf_counter() - started
    return outcomes


class StreamOutcomes(list[FileOutcome]):
    """The files of one stream's run, plus the time spent indexing its new days and hours."""

    index_seconds: float = 0.0


def _finish_new_tables(conn: Connection, stream: Stream) -> None:
    """Index and attach the days and hours loaded without an index, by this run or by one that
    stopped before its end."""
    with conn.cursor() as cur:
        lock_stream(cur, stream.name)
        finished = finish_new_tables(cur, stream)
    conn.commit()
    if finished:
        log.info("indexed and attached %s", ", ".join(finished))


def _ingest_files(
    conn: Connection,
    files: list[LandingFile],
    stream: Stream,
    settings: Settings,
    run_id: str | None,
    outcomes: list[FileOutcome],
) -> None:
    """Small files load in batches (ingest_batch.py), larger ones one at a time while the next
    is prepared, in the files' order."""
    small: list[tuple[LandingFile, int]] = []
    limit = min(settings.batch_limits.small_file_rows, settings.file_limits.stream_above_rows)
    for file in files:
        rows = estimated_rows(file)
        if rows <= limit:
            small.append((file, rows))
            continue
        _ingest_batches(conn, small, stream, settings, run_id, outcomes)
        small = []
        _ingest_one_by_one(conn, [file], stream, settings, run_id, outcomes)
    _ingest_batches(conn, small, stream, settings, run_id, outcomes)


def _ingest_batches(
    conn: Connection,
    files: list[tuple[LandingFile, int]],
    stream: Stream,
    settings: Settings,
    run_id: str | None,
    outcomes: list[FileOutcome],
) -> None:
    from energy_pipelines.ingest_batch import batches_of, load_batch

    for batch in batches_of(files, settings):
        try:
            outcomes.extend(load_batch(conn, batch, stream, settings, run_id))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:  # Polars panics derive from BaseException
            if not _connection_alive(conn) or not blames_the_file(error):
                raise  # the database, not a file, failed: the run fails, files stay
            # Something in the batch PostgreSQL refused: load its files one by one, so only
            # the file to blame is quarantined.
            log.exception(
                "a batch of %d %s files failed; loading them one by one", len(batch), stream.name
            )
            _ingest_one_by_one(conn, batch, stream, settings, run_id, outcomes)


def _ingest_one_by_one(
    conn: Connection,
    files: list[LandingFile],
    stream: Stream,
    settings: Settings,
    run_id: str | None,
    outcomes: list[FileOutcome],
) -> None:
    # One file is read, validated and transformed on a second thread while the one before it
    # loads: Polars and PostgreSQL work at the same time.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"prepare-{stream.name}") as pool:

        def prepare(index: int) -> Future[Preparation] | None:
            # A file read in chunks is prepared chunk by chunk while it loads, not ahead.
            if index >= len(files) or read_in_chunks(files[index], settings.file_limits):
                return None
            return pool.submit(prepare_or_reject, files[index], stream, settings)

        upcoming = prepare(0)
        for index, file in enumerate(files):
            ahead, upcoming = upcoming, prepare(index + 1)
            _ingest_one(conn, file, stream, settings, run_id, outcomes, ahead)


def _ingest_one(
    conn: Connection,
    file: LandingFile,
    stream: Stream,
    settings: Settings,
    run_id: str | None,
    outcomes: list[FileOutcome],
    ahead: Future[Preparation] | None,
) -> None:
    try:
        outcomes.append(ingest_file(conn, file, stream, settings, run_id, ahead))
    except FileNotFoundError:
        conn.rollback()
        log.info("%s was already handled by another run; skipped", file.relative_path)
    except FileChanged:
        conn.rollback()
        log.warning("%s changed while it was read; left for the next run", file.relative_path)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # Polars panics derive from BaseException
        if not _connection_alive(conn) or not blames_the_file(error):
            raise  # the database, not the file, failed: the run fails, files stay
        # One file PostgreSQL refuses must not stop every later run: quarantine it.
        log.exception("%s could not be loaded; quarantined", file.relative_path)
        outcomes.append(
            _quarantine_whole_file(
                conn,
                file,
                stream,
                settings,
                run_id,
                printable(f"the file could not be loaded: {first_line(error)[:500]}"),
            )
        )


def _connection_alive(conn: Connection) -> bool:
    """Rolls back the failed transaction; False when the session itself is gone."""
    try:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
        conn.rollback()
        return True
    except Exception:
        return False


def _quarantine_whole_file(
    conn: Connection,
    file: LandingFile,
    stream: Stream,
    settings: Settings,
    run_id: str | None,
    reason: str,
    sha256: str | None = None,
) -> FileOutcome:
    if sha256 is None:
        try:
            sha256 = sha256_of(file.path)
        except OSError:
            sha256 = ""
    manifest = _manifest_for(file, stream, sha256, run_id, datetime.now(UTC))
    manifest.status, manifest.error = "quarantined", reason
    with conn.cursor() as cur:
        lock_stream(cur, stream.name)
        file_id = insert_manifest_row(cur, manifest)
    conn.commit()
    moved = quarantine_rejected(file, settings.landing_dir, reason, sha256)
    return FileOutcome(manifest, file_id, moved)
