"""The stage driver of one stream: its waiting files planned into batches, each batch read
(and small files validated and transformed) on a thread of its own ahead of the loads, then
loaded in one transaction (batch.py), batches of different UTC hours side by side on a pool
of sessions (pool.py); finally the run's new day and hour tables are indexed and attached
(load/key_builds.py). Its error policy, in one place:

- a file that cannot be read, or whose rows PostgreSQL refuses, is quarantined alone with the
  reason; the rest of its batch loads without it;
- a file that changes or vanishes while its batch is read is left for the next run;
- a batch whose session the server ends is loaded again on a new session (pool.py);
- when the database itself fails otherwise (the server refuses for its own reasons), the run
  fails and every file of the batch stays waiting.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from energy_pipelines.contract import Stream
from energy_pipelines.ingest.batch import BatchLoad, FilesChanged
from energy_pipelines.ingest.chunks import (
    FileFailed,
    PreparedChunk,
    RowDensity,
    estimated_from_size,
    estimated_rows,
    prepare_chunks,
    read_files,
)
from energy_pipelines.ingest.files import FileLoad, FileOutcome
from energy_pipelines.ingest.pool import BatchPool
from energy_pipelines.landing.discover import LandingFile, find_waiting_files
from energy_pipelines.landing.errors import first_line, printable
from energy_pipelines.load.database import Connection, connect, resolve_database_url
from energy_pipelines.load.errors import blames_the_file, sqlstate_of
from energy_pipelines.load.key_builds import finish_new_tables
from energy_pipelines.settings import Settings

log = logging.getLogger(__name__)

# Streams load on parallel threads; a large file's chunk state (a reader reading ahead, the
# kept rows of earlier chunks) is what bounds a process's memory, so one is loaded at a time.
_LARGE_FILE_SLOT = threading.BoundedSemaphore(1)


class StreamOutcomes(list[FileOutcome]):
    """The files of one stream's run, plus the time spent indexing its new days and hours."""

    index_seconds: float = 0.0
    # Seconds its batches waited for earlier batches of the same hours (ingest/pool.py).
    turn_wait_seconds: float = 0.0
    # The server ended the caller's session during the load: the caller needs a new one.
    session_replaced: bool = False


def ingest_stream(
    conn: Connection,
    stream: Stream,
    settings: Settings,
    run_id: str | None,
    only_paths: list[str] | None = None,
) -> StreamOutcomes:
    """Load the stream's settled waiting files (or only the listed landing-relative paths)."""
    files = find_waiting_files(settings.landing_dir, stream, settings.settle_seconds)
    if only_paths is not None:
        wanted = set(only_paths)
        files = [f for f in files if f.relative_path in wanted]
    # Planning reads Parquet footers: it runs on the preparing thread, batch by batch.
    reader = BatchReader(files, stream, settings, run_id)
    outcomes = StreamOutcomes()
    url = resolve_database_url(settings)
    # A stream without time (correlation) has no hours to tell its batches apart.
    sessions = settings.load_sessions if stream.has_timestamp else 1
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"prepare-{stream.name}") as ahead,
        BatchPool(conn, url, sessions, stream, settings.batch_limits.rows_in_flight) as pool,
    ):
        upcoming = ahead.submit(reader.read_next)
        while (current := upcoming.result()) is not None:
            upcoming = ahead.submit(reader.read_next)
            if not pool.submit(
                current.rows(settings),
                partial(current.hours, stream, settings),
                partial(_load_read_batch, current, stream, settings),
            ):
                break  # a batch failed: the run fails, the files not loaded stay
        outcomes.extend(pool.results())
    outcomes.turn_wait_seconds = pool.turn_wait_seconds
    outcomes.session_replaced = pool.callers_session_lost
    if stream.has_timestamp:
        started = time.perf_counter()
        if outcomes.session_replaced:
            with connect(url) as fresh:
                finish_new_tables(fresh, url, stream, settings.load_sessions)
        else:
            finish_new_tables(conn, url, stream, settings.load_sessions)
        outcomes.index_seconds = time.perf_counter() - started
    return outcomes


class BatchReader:
    """Reads the planned batches in turn. A batch whose small files hold more rows than the
    batch limit (their rows were estimated from their size) is cut where the limit falls; the
    files after the cut, read already, make the next batch."""

    def __init__(
        self, files: list[LandingFile], stream: Stream, settings: Settings, run_id: str | None
    ) -> None:
        self.stream, self.settings, self.run_id = stream, settings, run_id
        # What is read teaches the plan how many rows a small file holds.
        self.density = RowDensity()
        self.plan = plan_batches(files, settings, self.density)
        self.carried: list[FileLoad] = []
        self.max_rows = settings.batch_limits.max_rows

    def read_next(self) -> ReadBatch | None:
        started = time.perf_counter()
        if self.carried:
            loads, alone, large = self.carried, False, False
        else:
            planned = next(self.plan, None)
            if planned is None:
                return None
            at = datetime.now(UTC)
            loads = [FileLoad(f, self.stream.name, self.run_id, at) for f in planned.files]
            alone, large = planned.alone, planned.large
            read_files(loads, self.stream, self.settings, whole=not large)
            self.density.observe(loads)
        if not large:
            loads, self.carried = _cut_at_rows(loads, self.max_rows)
        batch = ReadBatch(loads, datetime.now(UTC), time.perf_counter() - started)
        # Small files are prepared ahead; a file alone (a whole-fleet export) is validated and
        # transformed when its turn comes, so a stream holds one such file's prepared rows,
        # and the next one's rows as read, at a time.
        if not alone:
            batch.prepare(self.stream, self.settings)
        return batch


def _cut_at_rows(loads: list[FileLoad], max_rows: int) -> tuple[list[FileLoad], list[FileLoad]]:
    rows = 0
    for index, load in enumerate(loads):
        rows += load.raw.frame.height if load.raw is not None else 0
        if index and rows > max_rows:
            return loads[:index], loads[index:]
    return loads, []


@dataclass(frozen=True)
class PlannedBatch:
    files: list[LandingFile]
    # A file above the small-file rows: a batch of its own.
    alone: bool = False
    # A file whose rows are read chunk by chunk as it loads (always alone).
    large: bool = False


def plan_batches(
    files: list[LandingFile], settings: Settings, density: RowDensity | None = None
) -> Iterator[PlannedBatch]:
    """The files in order, as batches: runs of small files bounded by the batch limits (files,
    bytes, estimated rows: a batch is read whole before it is written, so these bound its
    memory), and every larger file a batch of its own. Planned lazily: `density`, updated as
    batches are read, makes the estimates of the later ones."""
    limits = settings.batch_limits
    small_rows = min(limits.small_file_rows, settings.file_limits.stream_above_rows)
    batch: list[LandingFile] = []
    size = rows = 0
    for file in files:
        estimate = estimated_rows(file, density)
        full = (
            len(batch) >= limits.max_files
            or size + file.size_bytes > limits.max_bytes
            or rows + estimate > limits.max_rows
            or estimate > small_rows
        )
        if batch and full:
            yield PlannedBatch(batch)
            batch, size, rows = [], 0, 0
            if estimated_from_size(file):  # what the batch just read teaches
                estimate = estimated_rows(file, density)
        if estimate > small_rows:
            yield PlannedBatch([file], True, estimate > settings.file_limits.stream_above_rows)
            continue
        batch.append(file)
        size += file.size_bytes
        rows += estimate
    if batch:
        yield PlannedBatch(batch)


@dataclass
class ReadBatch:
    """A batch's files hashed and read, and (unless a large file is read as it loads) its
    chunks prepared for the files it expects to write."""

    loads: list[FileLoad]
    at: datetime
    read_seconds: float = 0.0
    prepared_for: list[str] | None = None
    chunks: list[PreparedChunk] | None = None

    def prepare(self, stream: Stream, settings: Settings) -> None:
        """Validate and transform the rows of the files it expects to write, ahead of the load
        (a large file is prepared chunk by chunk as it loads)."""
        expected = _first_of_each_content(self.loads)
        if expected and all(x.raw is not None for x in expected):
            try:
                self.chunks = list(prepare_chunks(expected, stream, settings, self.at))
                self.prepared_for = [x.path for x in expected]
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # prepared again while it loads, where the policy applies
                self.chunks = None

    def chunks_for(
        self, stream: Stream, settings: Settings
    ) -> Callable[[list[FileLoad]], Iterator[PreparedChunk]]:
        def chunks(to_write: list[FileLoad]) -> Iterator[PreparedChunk]:
            if self.chunks is not None and self.prepared_for == [x.path for x in to_write]:
                return iter(self.chunks)
            return prepare_chunks(to_write, stream, settings, self.at)

        return chunks

    def rows(self, settings: Settings) -> int:
        """Rows read (a large file, read as it loads: a chunk's)."""
        return sum(
            x.raw.frame.height if x.raw is not None else settings.file_limits.chunk_rows
            for x in self.loads
            if x.state == "listed"
        )

    def hours(self, stream: Stream, settings: Settings) -> frozenset[datetime] | None:
        """Ready the rows (a file alone is validated and transformed now, at its turn) and
        say which UTC hours they fall on; None when that is not known before the load (a
        large file read as it loads, rows that could not be prepared)."""
        if not any(x.state == "listed" for x in self.loads):
            return frozenset()
        if self.chunks is None and not self.large:
            self.prepare(stream, settings)
        if self.chunks is None:
            return None
        hours: set[datetime] = set()
        for chunk in self.chunks:
            if stream.has_timestamp and chunk.unique.height:
                hours.update(chunk.unique["ts"].dt.truncate("1h").unique().to_list())
        return frozenset(hours)

    @property
    def large(self) -> bool:
        return any(x.state == "listed" and x.raw is None for x in self.loads)


def _first_of_each_content(loads: list[FileLoad]) -> list[FileLoad]:
    seen: set[str] = set()
    first = []
    for load in loads:
        if load.state == "listed" and load.sha256 not in seen:
            seen.add(load.sha256)
            first.append(load)
    return first


def _load_read_batch(
    batch: ReadBatch,
    stream: Stream,
    settings: Settings,
    conn: Connection,
    hours: frozenset[datetime] | None,
) -> list[FileOutcome]:
    # Tried again on a new session when its session was lost: the files are listed again.
    for x in batch.loads:
        x.reopen()
    return load_batch(conn, batch, stream, settings, hours)


def load_batch(
    conn: Connection,
    batch: ReadBatch,
    stream: Stream,
    settings: Settings,
    hours: frozenset[datetime] | None = None,
) -> list[FileOutcome]:
    """Load a read batch by the error policy above, locking `hours` (None: the whole stream);
    one outcome per file handled."""
    for _attempt in range(len(batch.loads) + 3):
        loads = [x for x in batch.loads if x.state != "left"]
        if not loads:
            return []
        load = BatchLoad(conn, stream, settings, loads, batch.chunks_for(stream, settings), hours)
        load.seconds["read"] = batch.read_seconds
        try:
            with _LARGE_FILE_SLOT if batch.large else contextlib.nullcontext():
                return load.run()
        except FilesChanged as changed:
            conn.rollback()
            for x in changed.loads:
                log.warning("%s changed while it was read; left for the next run", x.path)
                x.reopen()
                x.leave()
        except FileFailed as failed:
            conn.rollback()
            log.warning("%s quarantined: %s", failed.load.path, failed.reason)
            failed.load.reopen()
            failed.load.quarantine(failed.reason)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:  # Polars panics derive from BaseException
            if _same_content_loaded_meanwhile(error):
                # A batch of other hours (rows all rejected, or none) with a file of the same
                # content committed first: screened again, that file is now a duplicate.
                conn.rollback()
                log.info("a file of the batch was loaded meanwhile by another batch; again")
                for x in batch.loads:
                    x.reopen()
                continue
            if not _connection_alive(conn) or not blames_the_file(error):
                raise  # the database, not a file, failed: the run fails, files stay
            for x in loads:
                x.reopen()
            candidates = [x for x in loads if x.state == "listed"]
            if len(loads) > 1:
                # Something in the batch PostgreSQL refused: one by one, so only the file to
                # blame is quarantined.
                log.exception("a batch of %d %s files failed; one by one", len(loads), stream.name)
                return [
                    outcome
                    for x in loads
                    for outcome in load_batch(
                        conn, ReadBatch([x], batch.at), stream, settings, hours
                    )
                ]
            log.exception("%s could not be loaded; quarantined", loads[0].path)
            for x in candidates:
                x.quarantine(printable(f"the file could not be loaded: {first_line(error)[:500]}"))
        batch.chunks = None
        for x in batch.loads:
            x.reopen()
    raise RuntimeError(f"a batch of {len(batch.loads)} {stream.name} files kept changing")


def _same_content_loaded_meanwhile(error: BaseException) -> bool:
    """The manifest's one-loaded-file-per-content index refused the batch's manifest rows."""
    return sqlstate_of(error) == "23505" and "ingested_files_loaded_once" in str(error)


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
