"""Read one landing file into Polars frames named by the contract, or reject the whole file.

There is one reader: it checks a file (size, memory budget, header, column mapping, types),
then hands its rows over as a sequence of chunks, numbered as in the file. A small file, or a
file read whole, is one chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from energy_pipelines.contract import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, Stream
from energy_pipelines.landing.checks import (
    check_csv_headers,
    check_header_encoding,
    check_parquet_footer,
    check_size,
    check_types,
    check_unique_headers,
    map_columns,
)
from energy_pipelines.landing.discover import LandingFile
from energy_pipelines.landing.errors import FileRejected, failures_as, first_line, rejecting
from energy_pipelines.settings import FileLimits

ROW_NUMBER = "row_number"
# Above this many rows a Parquet file is read on Arrow's thread pool; below, this thread is
# faster (0.87 -> 0.3 ms for a 100-row file).
_THREADED_PARQUET_ROWS = 100_000
_EARLIEST_SECOND = int(EARLIEST_TIMESTAMP.timestamp())
_LATEST_SECOND = int(LATEST_TIMESTAMP.timestamp())


@dataclass(frozen=True)
class RawFile:
    """A file's rows as read: contract columns renamed to table names, plus a 1-based row_number.

    `source_names` maps each table column back to the header the file used, so quarantined rows
    show what the gateway actually sent.
    """

    frame: pl.DataFrame
    source_names: dict[str, str]
    extra_columns: list[str]
    # layout_of(frame.schema, source_names), when the reader knows it (files read together
    # share one): batches group their files by it.
    layout: tuple[Any, ...] | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple[Any, ...]:
        return self.layout or layout_of(self.frame.schema, self.source_names)


def layout_of(schema: pl.Schema, source_names: dict[str, str]) -> tuple[Any, ...]:
    """Files combine when their rows have the same column types and came under the same
    headers (quarantined rows name the header the file used)."""
    return (tuple(schema.items()), tuple(sorted(source_names.items())))


def read_landing_file(
    file: LandingFile, stream: Stream, limits: FileLimits | None = None
) -> RawFile:
    """The whole file as one RawFile."""
    [whole] = _read(file, stream, limits or FileLimits(), chunk_rows=None)
    return whole


def iter_landing_chunks(
    file: LandingFile, stream: Stream, limits: FileLimits | None = None, chunk_rows: int = 1_000_000
) -> Iterator[RawFile]:
    """The file's rows as RawFiles of at most chunk_rows rows each, in file order, with row numbers
    continuing across chunks exactly as read_landing_file numbers them. Header, column mapping and
    type checks happen once, before the first chunk; a problem found later (a corrupt row group,
    invalid UTF-8 in a later part) raises FileRejected from the iterator with the words
    read_landing_file would give.

    Nothing happens until the first next(), so every FileRejected, the header's too, comes from
    the iterator. A file without rows gives one empty chunk. Of a Parquet file only the
    contract's columns are read.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    yield from _read(file, stream, limits or FileLimits(), chunk_rows)


def _read(
    file: LandingFile, stream: Stream, limits: FileLimits, chunk_rows: int | None
) -> Iterator[RawFile]:
    """The reader: every check once, then the rows in chunks of chunk_rows (None: one chunk).

    The column types are checked on the first frame a source gives (always at least one, empty
    for a file without rows), so no file is converted twice."""
    check_size(file, limits)
    source = (
        _ParquetSource(file, limits, chunk_rows)
        if file.format == "parquet"
        else _CsvSource(file, chunk_rows)
    )
    with closing(source):
        mapping, extra = map_columns(source.headers(), stream)
        frames = source.frames(list(mapping.values()))
        first = next(frames)
        check_types(first.schema, mapping, stream)
        numbered = _numbered(chain([first], frames), mapping, source.drops_blank_lines)
        for frame in _regrouped(numbered, chunk_rows):
            yield RawFile(frame, dict(mapping), list(extra))


def _numbered(
    frames: Iterator[pl.DataFrame], mapping: dict[str, str], drops_blank_lines: bool
) -> Iterator[pl.DataFrame]:
    """The frames numbered from 1 across the file (blank lines count), named by the contract."""
    offset = 1
    for frame in frames:
        numbered = frame.with_row_index(ROW_NUMBER, offset=offset)
        offset += frame.height
        renamed = named(numbered, mapping)
        if drops_blank_lines:
            # Decided on every column, applied to the contract's only (most files have no
            # blank line: then nothing is copied).
            kept = numbered.select(not_blank()).to_series()
            if not kept.all():
                renamed = renamed.filter(kept)
        yield renamed


def _regrouped(frames: Iterator[pl.DataFrame], chunk_rows: int | None) -> Iterator[pl.DataFrame]:
    """The frames regrouped into chunks of chunk_rows rows, the last maybe shorter (None: one
    chunk): sources hand over batches of their own sizes, e.g. ending where a row group ends.
    A file without rows (one empty frame) is one empty chunk."""
    held: pl.DataFrame | None = None
    produced = False
    for frame in frames:
        held = pl.concat([held, frame]) if held is not None and held.height else frame
        while chunk_rows is not None and held.height >= chunk_rows:
            yield held.head(chunk_rows)
            held, produced = held.slice(chunk_rows), True
    if held is not None and (held.height or not produced):
        yield held


def named(frame: pl.DataFrame, mapping: dict[str, str], *keep: str) -> pl.DataFrame:
    """The columns `keep`, the row number and the contract's columns, renamed to table names."""
    return frame.select(
        *keep,
        pl.col(ROW_NUMBER).cast(pl.Int64),
        *[pl.col(header).alias(column) for column, header in mapping.items()],
    )


def not_blank(*besides: str) -> pl.Expr:
    """True for a CSV row with a value in some column: a blank line is no record (its row
    number still counts it, to match the file). `besides`: columns the reader added."""
    return ~pl.all_horizontal(pl.exclude(ROW_NUMBER, *besides).is_null())


# --------------------------------------------------------------------------------------------
# The sources: a format's header and rows. headers() checks and returns the header; frames()
# gives the rows as frames in file order, at least one (empty for a file without rows), with
# a reader's failure turned into FileRejected.
# --------------------------------------------------------------------------------------------


class _CsvSource:
    """Every column as text: typing is the validation stage's job, and raw text is what a
    quarantined row must show. The header comes with the first frame (no second parse)."""

    drops_blank_lines = True

    def __init__(self, file: LandingFile, chunk_rows: int | None) -> None:
        self.file = file
        self.rejection = partial(_csv_rejection, file)
        self.scan = pl.scan_csv(
            file.path,
            infer_schema=False,
            encoding="utf8",
            has_header=True,
            raise_if_empty=True,
            # A landing name may hold [ ] * ?: it names this one file, not a pattern.
            glob=False,
        )
        self._batches = self._collect(chunk_rows)
        self._frames = rejecting(self._batches, self.rejection)
        self._first: pl.DataFrame | None = None

    def close(self) -> None:
        self._batches.close()

    def headers(self) -> list[str]:
        check_header_encoding(self.file)
        self._first = next(self._frames, None)
        if self._first is None:  # no rows, and the reader gave no empty batch
            with failures_as(self.rejection):
                self._first = pl.DataFrame(schema=self.scan.collect_schema())
        check_csv_headers(self._first.columns)
        return self._first.columns

    def frames(self, headers: list[str]) -> Iterator[pl.DataFrame]:
        # Every column, not only `headers`: a line is blank only if all its fields are.
        assert self._first is not None, "headers() first"
        yield self._first
        yield from self._frames

    def _collect(self, chunk_rows: int | None) -> Iterator[pl.DataFrame]:
        if chunk_rows is None:
            yield self.scan.collect()
        else:
            # Named, not "auto": the engine affinity setting could pick the in-memory engine,
            # which reads the whole file first.
            yield from self.scan.collect_batches(chunk_size=chunk_rows, engine="streaming")


class _ParquetSource:
    """The footer is checked before anything is read; of the rows only the contract's columns
    are read."""

    # A row of nulls is a row: it breaks "is missing".
    drops_blank_lines = False

    def __init__(self, file: LandingFile, limits: FileLimits, chunk_rows: int | None) -> None:
        self.file = file
        self.chunk_rows = chunk_rows
        self.rejection = partial(_parquet_rejection, file)
        with failures_as(self.rejection):
            self.parquet = pq.ParquetFile(file.path)
        try:
            with failures_as(self.rejection):
                check_parquet_footer(self.parquet.metadata, limits)
        except FileRejected:
            self.parquet.close()
            raise

    def close(self) -> None:
        self.parquet.close()

    def headers(self) -> list[str]:
        with failures_as(self.rejection):
            headers: list[str] = self.parquet.schema_arrow.names
        check_unique_headers(headers)
        return headers

    def frames(self, headers: list[str]) -> Iterator[pl.DataFrame]:
        for table in rejecting(self._tables(headers), self.rejection):
            yield _arrow_to_polars(table, self.file)

    def _tables(self, headers: list[str]) -> Iterator[pa.Table]:
        if self.chunk_rows is None:
            threaded = self.parquet.metadata.num_rows > _THREADED_PARQUET_ROWS
            yield self.parquet.read(columns=headers, use_threads=threaded)
            return
        batches = self.parquet.iter_batches(batch_size=self.chunk_rows, columns=headers)
        first = next(batches, None)
        if first is None:  # a file without rows
            yield self.parquet.schema_arrow.empty_table().select(headers)
            return
        for batch in chain([first], batches):
            yield pa.Table.from_batches([batch])


def _csv_rejection(file: LandingFile, exc: BaseException) -> FileRejected:
    if isinstance(exc, pl.exceptions.NoDataError):
        return FileRejected("the file is empty: expected a header row and readings")
    message = _parser_failure(exc, file)
    if "utf-8" in message.lower() or "utf8" in message.lower():
        return FileRejected(
            "the file is not valid UTF-8 text: save it as UTF-8 (a byte-order mark is fine)"
        )
    return FileRejected(f"the file is not readable as comma-separated CSV: {message}")


def _parquet_rejection(file: LandingFile, exc: BaseException) -> FileRejected:
    return FileRejected(
        "the file is not a readable Parquet file (truncated or corrupt?): "
        + _parser_failure(exc, file)
    )


def _parser_failure(exc: BaseException, file: LandingFile) -> str:
    # The operator knows the file by its landing path, not by where this server keeps it.
    return first_line(exc).replace(str(file.path), file.relative_path)


def _arrow_to_polars(table: pa.Table, file: LandingFile) -> pl.DataFrame:
    """Normalize, check and convert Parquet columns read as Arrow (a whole file or one batch)."""
    with failures_as(partial(_parquet_rejection, file)):
        table = pa.table(
            {name: _normalize_arrow_column(table[name]) for name in table.column_names}
        )
    try:
        # Checks string columns are valid UTF-8, which PostgreSQL will insist on.
        table.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise FileRejected(
            f"a text column is not valid UTF-8: {_parser_failure(exc, file)}"
        ) from exc
    with failures_as(
        lambda exc: FileRejected(
            f"the Parquet columns cannot be read: {_parser_failure(exc, file)}"
        )
    ):
        frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _normalize_arrow_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_dictionary(kind):
        # pandas' category columns: the values are still text (or numbers).
        return _normalize_arrow_column(column.cast(kind.value_type))
    if pa.types.is_timestamp(kind):
        # Outside the calendar Polars handles a timestamp is no reading (a flipped bit, a
        # garbage file), and Polars panics converting it. Clamped to the edge, the row still
        # breaks the same rule (before 2000 / in the future) and is quarantined, not the file.
        per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[kind.unit]
        if kind.unit == "ns":  # int64 nanoseconds cover only 1677-2262
            low = (-(2**63) // per_second + 1) * per_second
            high = (2**63 - 1) // per_second * per_second
        else:
            low, high = _EARLIEST_SECOND * per_second, _LATEST_SECOND * per_second
        raw = column.cast(pa.int64())
        clamped = pc.min_element_wise(
            pc.max_element_wise(raw, low, skip_nulls=False), high, skip_nulls=False
        )
        # Polars cannot parse offsets like +05:30; the instant is the same in UTC.
        return clamped.cast(pa.timestamp(kind.unit, tz="UTC" if kind.tz is not None else None))
    return column
