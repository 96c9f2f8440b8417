"""Load: one batch of a stream's files in ONE transaction, exactly once per file.

Under the stream's load lock the batch's files are screened against the manifest (content
loaded before: skipped, or healed when only the move was missing), the files to load get
their file ids, every chunk's rows are written (history, what later stages derive, the rows
quarantined), then every file's manifest row with its final counts; the commit makes all of
it visible at once, and only then are the files moved out of landing. A crash at any point
leaves the batch all or nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import polars as pl

from energy_pipelines.contract import Stream
from energy_pipelines.faults import crash_point
from energy_pipelines.ingest.chunks import PreparedChunk
from energy_pipelines.ingest.files import COUNTS, FileLoad, FileOutcome
from energy_pipelines.landing.read import ROW_NUMBER
from energy_pipelines.load.after_commit import archive_loaded, quarantine_rejected
from energy_pipelines.load.database import Connection
from energy_pipelines.load.derived import write_derived
from energy_pipelines.load.history import (
    insert_staged_rejected_rows,
    stage_rejected_rows,
    with_file_ids,
    write_history,
)
from energy_pipelines.load.locks import lock_hours, lock_stream
from energy_pipelines.load.manifest import (
    allocate_file_ids,
    find_loaded_many,
    insert_manifest_rows,
)
from energy_pipelines.settings import Settings
from energy_pipelines.transform.batch import (
    FILE_INDEX,
    conflict_rules_in_batch,
    counts_per_file,
    file_ids_of,
    ranges_per_file,
)
from energy_pipelines.transform.derived import derive
from energy_pipelines.validate.rules import raw_values_json

# Prepares the chunks of the files to write (their order is the batch order).
Chunks = Callable[[list[FileLoad]], Iterator[PreparedChunk]]


class FilesChanged(Exception):
    """Files of the batch changed while it was read: the batch is redone without them."""

    def __init__(self, loads: list[FileLoad]) -> None:
        super().__init__(", ".join(load.path for load in loads))
        self.loads = loads


class BatchLoad:
    def __init__(
        self,
        conn: Connection,
        stream: Stream,
        settings: Settings,
        loads: list[FileLoad],
        chunks: Chunks,
        hours: frozenset[datetime] | None = None,
    ) -> None:
        self.conn, self.stream, self.settings = conn, stream, settings
        self.loads = loads
        self.chunks = chunks
        # The UTC hours the batch's rows fall on: it locks those (None: the whole stream).
        self.hours = hours
        self.seconds: dict[str, float] = {}
        self._rejects_staged = False

    def run(self) -> list[FileOutcome]:
        """Write and commit the batch, then move its files; one outcome per file handled."""
        started = time.perf_counter()
        with self.conn.cursor() as cur:
            if self.hours is None or not self.stream.has_timestamp:
                lock_stream(cur, self.stream.name)
            else:
                lock_hours(cur, self.stream.name, sorted(self.hours))
            self.seconds["lock_wait"] = time.perf_counter() - started
            crash_point("after_locks")
            to_write = self._screen(cur)
            for chunk in self.chunks(to_write):
                self._write_chunk(cur, chunk, to_write)
            self._record(cur)
            crash_point("before_commit")
            changed = [x for x in self.loads if x.state == "written" and not x.file.unchanged()]
            if changed:
                # What was parsed may not be what the manifest's hash describes.
                raise FilesChanged(changed)
        self.conn.commit()
        self.seconds["load"] = time.perf_counter() - started - self.seconds["lock_wait"]
        crash_point("after_commit")
        return self._move_files()

    def _screen(self, cur: Any) -> list[FileLoad]:
        """Decide each listed file's fate against the manifest; the files to write, opened."""
        listed = [x for x in self.loads if x.state == "listed"]
        loaded = find_loaded_many(cur, self.stream.name, [x.sha256 for x in listed])
        first_of: dict[str, FileLoad] = {}
        repeats: list[FileLoad] = []
        for load in listed:
            earlier = loaded.get(load.sha256)
            if earlier is not None and earlier.path == load.path:
                load.heal(earlier)
            elif earlier is not None:
                load.skip(earlier.path, earlier.file_id)
            elif load.sha256 in first_of:
                repeats.append(load)
            else:
                first_of[load.sha256] = load
        to_write = list(first_of.values())
        for load, file_id in zip(to_write, allocate_file_ids(cur, len(to_write)), strict=True):
            load.open(file_id)
        for load in repeats:
            first = first_of[load.sha256]
            load.skip(first.path, first.file_id or 0)
        return to_write

    def _write_chunk(self, cur: Any, chunk: PreparedChunk, to_write: list[FileLoad]) -> None:
        """Write one chunk's rows in the batch's transaction and add its counts to its files."""
        for stage, seconds in chunk.seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        file_ids = [load.file_id or 0 for load in to_write]
        staged_ids = file_ids_of(pl.from_arrow(chunk.staged[ROW_NUMBER]), file_ids)  # type: ignore[arg-type]
        staged = with_file_ids(chunk.staged, staged_ids.to_arrow())
        ts_range = _range(chunk.unique)
        written = write_history(cur, self.stream, staged, ts_range)
        inserted = chunk.unique
        if written.existing_rows.len():
            inserted = inserted.filter(~pl.col(ROW_NUMBER).is_in(written.existing_rows.implode()))
        inserted = inserted.with_columns(
            file_ids_of(inserted[ROW_NUMBER], file_ids).alias("file_id")
        )
        write_derived(cur, self.stream, derive(inserted, self.stream, self.settings))
        crash_point("after_history_insert")
        conflicts = written.conflicts[ROW_NUMBER]
        stored = written.existing_rows.to_frame(ROW_NUMBER).with_columns(
            (~pl.col(ROW_NUMBER).is_in(conflicts.implode())).alias("same_values")
        )
        counts = counts_per_file(
            chunk.raw.frame[ROW_NUMBER],
            chunk.rejects,
            chunk.unique[ROW_NUMBER],
            stored,
            len(to_write),
        )
        for row in counts.iter_rows(named=True):
            if row["read"]:
                counted = {name: row[name.removeprefix("rows_")] for name in COUNTS}
                to_write[row[FILE_INDEX]].write(counted, chunk.extra_columns)
        for row in ranges_per_file(chunk.unique).iter_rows(named=True):
            to_write[row[FILE_INDEX]].add_range(row["min_ts"], row["max_ts"], row["days"])
        rejected = _rejected_rows(chunk, written.conflicts, self.stream, to_write)
        self._rejects_staged |= stage_rejected_rows(cur, rejected, not self._rejects_staged)

    def _record(self, cur: Any) -> None:
        """Every file's manifest row, then the rows quarantined (they refer to it)."""
        opened = [x for x in self.loads if x.state in ("open", "written")]
        for load in opened:
            if load.state == "open":  # a file without rows
                load.write(dict.fromkeys(COUNTS, 0), [])
        insert_manifest_rows(cur, [x.manifest for x in opened], [x.file_id or 0 for x in opened])
        others = [x for x in self.loads if x.state in ("skipped", "quarantined")]
        for load, file_id in zip(
            others, insert_manifest_rows(cur, [x.manifest for x in others]), strict=True
        ):
            load.file_id = file_id
        if self._rejects_staged:
            insert_staged_rejected_rows(cur)

    def _move_files(self) -> list[FileOutcome]:
        """Move each handled file out of the waiting area. The manifest is committed already:
        a move that fails leaves the file where it is, and the next run recognises it."""
        outcomes = []
        landing = self.settings.landing_dir
        for load in self.loads:
            if load.state == "left":
                continue
            if load.state == "quarantined":
                reason = load.manifest.error or ""
                moved = quarantine_rejected(load.file, landing, reason, load.sha256)
                load.moved_to = str(moved) if moved is not None else None
            else:
                load.moved_to = archive_loaded(self.conn, load.file, load.file_id or 0, landing)
            if load.state == "written":
                load.commit()
            # The batch's stage seconds go to its first file, so sums over files stay true.
            outcomes.append(load.outcome(None if outcomes else dict(self.seconds)))
        return outcomes


def _range(unique: pl.DataFrame) -> Any:
    if "ts" not in unique.columns or unique.height == 0:
        return None
    return unique["ts"].min(), unique["ts"].max()


def _rejected_rows(
    chunk: PreparedChunk, conflicts: pl.DataFrame, stream: Stream, to_write: list[FileLoad]
) -> pl.DataFrame:
    """The chunk's quarantined rows in the files' own numbering, ready for rejected_rows."""
    history = conflicts.select(
        pl.col(ROW_NUMBER).cast(pl.Int64),
        pl.lit(None, pl.String).alias("column_name"),
        pl.lit(
            "a reading with the same key and different values is already stored; "
            "the stored reading is kept"
        ).alias("rule"),
        pl.lit("conflicting").alias("kind"),
        pl.lit(None, pl.Int64).alias("first_row"),
        pl.col("stored_values"),
    )
    in_batch = chunk.rejects.with_columns(pl.lit(None, pl.String).alias("stored_values"))
    rejected = pl.concat([in_batch, history], how="diagonal_relaxed")
    if rejected.height == 0:
        return pl.DataFrame()
    paths = [load.path for load in to_write]
    raw_json = raw_values_json(chunk.raw, rejected[ROW_NUMBER])
    rejected = conflict_rules_in_batch(rejected.join(raw_json, on=ROW_NUMBER, how="left"), paths)
    ids = pl.Series([load.file_id or 0 for load in to_write], dtype=pl.Int64)
    return rejected.select(
        ids.gather(rejected[FILE_INDEX]).alias("file_id"),
        pl.lit(stream.name).alias("stream"),
        pl.Series(paths, dtype=pl.String).gather(rejected[FILE_INDEX]).alias("source_path"),
        ROW_NUMBER,
        "column_name",
        "kind",
        "rule",
        "raw_values",
        "stored_values",
    )
