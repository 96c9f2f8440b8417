"""Landing -> validate -> transform for a batch: its files hashed and read, their rows
validated, deduplicated and shaped for history, as chunks of at most a batch's rows.

Small files are read whole (a gateway folder's files by one Polars call) and combined into
one chunk per layout; a large file is a batch of one, read chunk by chunk while it loads so
memory follows the chunk. Rows whose key an earlier chunk of the batch kept are its
duplicates or conflicts (EarlierRows), whichever file they came from.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from energy_pipelines.contract import Stream
from energy_pipelines.ingest.files import FileLoad
from energy_pipelines.landing.discover import LandingFile, read_content, sha256_of
from energy_pipelines.landing.errors import FileRejected, first_line, printable
from energy_pipelines.landing.read import RawFile, iter_landing_chunks, read_landing_file
from energy_pipelines.landing.read_many import read_files_at_once
from energy_pipelines.settings import Settings
from energy_pipelines.transform.batch import combine
from energy_pipelines.transform.readings import (
    DeduplicatedRows,
    EarlierRows,
    deduplicate_within_file,
    to_staging_table,
)
from energy_pipelines.validate.rules import validate_rows

PERMISSION_DENIED = "the file cannot be read (permission denied): let the pipeline's user read it"


# A Parquet file this small is a gateway's few minutes, never a file to read in chunks: its
# rows are estimated from its size instead of opening its footer (a footer per file costs a
# gateway layout's run several percent of its CPU). Such files hold 3-50 bytes a row; until a
# run has read some (RowDensity), the densest is assumed, so a first batch is small rather
# than too large. A batch is cut by its real rows once read (stream.BatchReader).
SMALL_PARQUET_BYTES = 16 << 10
DENSEST_SMALL_PARQUET_BYTES_PER_ROW = 3.0


def estimated_from_size(file: LandingFile) -> bool:
    """Whether the file's rows are estimated from its size (a small Parquet file)."""
    return file.format == "parquet" and file.size_bytes <= SMALL_PARQUET_BYTES


class RowDensity:
    """The fewest bytes a row of the small Parquet files read so far, per read batch: what the
    next batches' rows are estimated with (never fewer rows than the densest batch had)."""

    def __init__(self) -> None:
        self.bytes_per_row = DENSEST_SMALL_PARQUET_BYTES_PER_ROW
        self._measured = False

    def observe(self, loads: list[FileLoad]) -> None:
        small = [x for x in loads if x.raw is not None and estimated_from_size(x.file)]
        rows = sum(x.raw.frame.height for x in small if x.raw is not None)
        if rows:
            density = sum(x.file.size_bytes for x in small) / rows
            self.bytes_per_row = density if not self._measured else min(self.bytes_per_row, density)
            self._measured = True


def estimated_rows(file: LandingFile, density: RowDensity | None = None) -> int:
    """The file's rows as its Parquet footer claims them (estimated from the size of a small
    file), or an estimate for text files (about 40 bytes a CSV row; gzip shrinks readings
    about 4 times). A footer that cannot be read counts as no rows: the reader says what is
    wrong with the file."""
    if estimated_from_size(file):
        per_row = density.bytes_per_row if density else DENSEST_SMALL_PARQUET_BYTES_PER_ROW
        return max(1, int(file.size_bytes / per_row))
    if file.format == "parquet":
        try:
            return pq.ParquetFile(file.path).metadata.num_rows
        except Exception:
            return 0
    return file.size_bytes * (4 if file.format == "csv.gz" else 1) // 40


def parse_failure(failure: BaseException) -> str:
    return printable(f"the file could not be parsed: {first_line(failure)[:500]}")


def read_files(loads: list[FileLoad], stream: Stream, settings: Settings, whole: bool) -> None:
    """Hash every file and, unless it is a large file read as it loads (`whole` false), read
    it. A file that vanished is left (another run took it); one that cannot be read is
    quarantined with the reason. The files of one folder are read by one call when they can
    be, from the bytes that were hashed; any other one by one."""
    folders: dict[Any, list[tuple[FileLoad, bytes]]] = {}
    together = whole and len(loads) > 1  # small files: each read once, hashed and parsed
    for load in loads:
        content = b""
        try:
            if together:
                content, sha256 = read_content(load.file.path)
            else:
                sha256 = sha256_of(load.file.path)
            load.hashed(sha256)
        except FileNotFoundError:
            load.leave()
            continue
        except PermissionError:
            load.quarantine(PERMISSION_DENIED)
            continue
        if whole:
            folders.setdefault(load.file.path.parent, []).append((load, content))
    for members in folders.values():
        files, contents = [m.file for m, _ in members], [c for _, c in members]
        at_once = read_files_at_once(files, contents, stream, settings.file_limits)
        if at_once is not None:
            for (member, _), raw in zip(members, at_once, strict=True):
                member.raw = raw
            continue
        for member, _ in members:
            try:
                member.raw = read_landing_file(member.file, stream, settings.file_limits)
            except FileRejected as rejected:
                member.quarantine(rejected.reason)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as failure:  # Polars panics derive from BaseException
                member.quarantine(parse_failure(failure))


@dataclass(frozen=True)
class PreparedChunk:
    """Rows of a batch validated and transformed: everything the load needs, no database."""

    raw: RawFile  # the rows as read, numbered by batch row (transform/batch.py)
    unique: pl.DataFrame  # the rows to write: one per key, typed
    staged: pa.Table  # the same rows in key order with exact column types
    rejects: pl.DataFrame  # row_number, column_name, kind, rule, first_row
    extra_columns: list[str]
    seconds: dict[str, float]


class FileFailed(Exception):
    """A file of the batch could not be read past its first chunk: quarantine it alone."""

    def __init__(self, load: FileLoad, reason: str) -> None:
        super().__init__(reason)
        self.load, self.reason = load, reason


def prepare_rows(
    raw: RawFile, stream: Stream, settings: Settings, at: datetime, earlier: EarlierRows
) -> PreparedChunk:
    """Validate and transform one chunk's rows; `earlier` holds the rows earlier chunks kept."""
    started = time.perf_counter()
    validated = validate_rows(raw, stream, settings.limits, at)
    validated_at = time.perf_counter()
    deduplicated = deduplicate_within_file(validated.valid, stream)
    repeats = earlier.drop_repeats(deduplicated.unique)
    if repeats.duplicate_count or repeats.conflicts.height:
        deduplicated = DeduplicatedRows(
            unique=repeats.unique,
            duplicate_count=deduplicated.duplicate_count + repeats.duplicate_count,
            conflicts=pl.concat([deduplicated.conflicts, repeats.conflicts]),
            in_key_order=deduplicated.in_key_order,
        )
    unique = deduplicated.unique
    staged = to_staging_table(unique, stream, deduplicated.in_key_order)
    invalid = validated.rejects.with_columns(
        pl.lit("invalid").alias("kind"), pl.lit(None, pl.Int64).alias("first_row")
    )
    conflicts = deduplicated.conflicts.with_columns(
        pl.lit(None, pl.String).alias("column_name"),
        pl.lit("conflicting").alias("kind"),
        pl.lit("").alias("rule"),  # named per file once the batch's files are known
    ).select(ROW_NUMBER_COLUMNS)
    return PreparedChunk(
        raw=raw,
        unique=unique,
        staged=staged,
        rejects=pl.concat([invalid.select(ROW_NUMBER_COLUMNS), conflicts]),
        extra_columns=raw.extra_columns,
        seconds={
            "validate": validated_at - started,
            "transform": time.perf_counter() - validated_at,
        },
    )


ROW_NUMBER_COLUMNS = ["row_number", "column_name", "rule", "kind", "first_row"]


def prepare_chunks(
    loads: list[FileLoad], stream: Stream, settings: Settings, at: datetime
) -> Iterator[PreparedChunk]:
    """The chunks of the files to write (state listed or open), in batch order: a large file
    chunk by chunk as it is read, small files one chunk per layout."""
    earlier = EarlierRows(stream)
    if len(loads) == 1 and loads[0].raw is None:
        yield from _chunks_of_large_file(loads[0], stream, settings, at, earlier)
        return
    shapes: dict[tuple[Any, ...], list[int]] = {}
    for position, load in enumerate(loads):
        assert load.raw is not None, load.path
        shapes.setdefault(load.raw.shape, []).append(position)
    previous: PreparedChunk | None = None
    for positions in shapes.values():
        if previous is not None:
            earlier.add(previous.unique)
        raw = combine([loads[p].raw for p in positions], positions)  # type: ignore[misc]
        previous = prepare_rows(raw, stream, settings, at, earlier)
        yield previous


def _chunks_of_large_file(
    load: FileLoad, stream: Stream, settings: Settings, at: datetime, earlier: EarlierRows
) -> Iterator[PreparedChunk]:
    limits = settings.file_limits
    chunks = iter_landing_chunks(load.file, stream, limits, limits.chunk_rows)
    previous: PreparedChunk | None = None
    while True:
        started = time.perf_counter()
        try:
            raw = next(chunks, None)
        except FileRejected as rejected:
            raise FileFailed(load, rejected.reason) from rejected
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as failure:  # Polars panics derive from BaseException
            raise FileFailed(load, parse_failure(failure)) from failure
        read_seconds = time.perf_counter() - started
        if raw is None:
            return
        if previous is not None:
            earlier.add(previous.unique)
        previous = prepare_rows(raw, stream, settings, at, earlier)
        previous.seconds["read"] = read_seconds
        yield previous
