"""Many small files of one layout (a gateway's folder) read by one Polars call.

Polars reads the files in parallel without a Python step per file; each file still gets the
RawFile read_landing_file would give it, row numbers and all. Anything unusual about one file
(a corrupt file, another layout, a type that needs the careful path) returns None, and the
caller reads the files one by one, with the checks and the reason that come with that.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from energy_pipelines.contract import Stream
from energy_pipelines.landing.checks import (
    CSV_MEMORY_FACTOR,
    PARQUET_MEMORY_FACTOR,
    check_csv_headers,
    check_size,
    check_types,
    header_bytes,
    map_columns,
)
from energy_pipelines.landing.discover import LandingFile
from energy_pipelines.landing.errors import FileRejected, failures_as, first_line
from energy_pipelines.landing.read import ROW_NUMBER, RawFile, layout_of, named, not_blank
from energy_pipelines.settings import FileLimits

_SOURCE = "__source_file"
# Parquet types read together as they are; any other (a dictionary, another time zone, a
# narrow integer) takes the one-file reader, which normalizes it.
_FAST_DTYPES = (pl.String, pl.Float64, pl.Float32, pl.Int64, pl.Int32)


def _one_by_one(exc: BaseException) -> FileRejected:
    """Any failure of a read together (a corrupt file, differing layouts, a Polars panic): the
    files are then read one by one, each with its own reason."""
    return FileRejected(first_line(exc))


def read_files_at_once(
    files: list[LandingFile],
    contents: list[bytes],
    stream: Stream,
    limits: FileLimits | None = None,
) -> list[RawFile] | None:
    """The files' RawFiles, in the files' order, when they can be read together; else None.
    `contents`: the files' bytes as read and hashed (Parquet files are parsed from them, so
    the rows are those of the content the manifest names)."""
    limits = limits or FileLimits()
    if len(files) < 2:
        return None
    if all(f.format == "parquet" for f in files):
        return _parquet_at_once(files, contents, stream, limits)
    if all(f.format == "csv" for f in files):
        return _csv_at_once(files, stream, limits)
    return None


def _parquet_at_once(
    files: list[LandingFile], contents: list[bytes], stream: Stream, limits: FileLimits
) -> list[RawFile] | None:
    """Parsed from bytes, Polars cannot name the file of each row; each file's footer gives
    its rows instead, and the files' rows follow each other in order."""
    if sum(f.size_bytes for f in files) * PARQUET_MEMORY_FACTOR > limits.memory_budget_bytes:
        return None
    try:
        with failures_as(_one_by_one):
            for file in files:
                check_size(file, limits)
            heights = [pq.read_metadata(pa.BufferReader(c)).num_rows for c in contents]
            frame = pl.read_parquet(contents)
            if frame.height != sum(heights):
                return None
            mapping, extra = map_columns(frame.columns, stream)
            check_types(frame.schema, mapping, stream)
    except FileRejected:
        return None
    if not _fast_types(frame.schema, mapping, stream):
        return None
    starts = np.cumsum([0, *heights[:-1]], dtype=np.int64)
    in_file = np.arange(frame.height, dtype=np.int64) - np.repeat(starts, heights) + 1
    renamed = named(frame.with_columns(pl.Series(ROW_NUMBER, in_file)), mapping)
    shape = layout_of(renamed.schema, mapping)
    return [
        RawFile(renamed.slice(start, height), dict(mapping), list(extra), shape)
        for start, height in zip(starts.tolist(), heights, strict=True)
    ]


def _fast_types(schema: pl.Schema, mapping: dict[str, str], stream: Stream) -> bool:
    """Types read together as they are (else the one-file reader normalizes them)."""
    for field in stream.fields:
        dtype = schema[mapping[field.column]]
        plain = dtype in _FAST_DTYPES
        utc = isinstance(dtype, pl.Datetime) and dtype.time_zone in (None, "UTC")
        if not (plain or (field.kind == "timestamp" and utc)):
            return False
    return True


def _csv_at_once(
    files: list[LandingFile], stream: Stream, limits: FileLimits
) -> list[RawFile] | None:
    """Plain CSV files with byte-identical header rows (UTF-8, no repeated column): every
    column read as text, as the one-file reader reads it."""
    if sum(f.size_bytes for f in files) * CSV_MEMORY_FACTOR > limits.memory_budget_bytes:
        return None
    try:
        with failures_as(_one_by_one):
            headers = set()
            for file in files:
                check_size(file, limits)
                headers.add(header_bytes(file))
            if len(headers) != 1:
                return None
            header = headers.pop().decode("utf-8")
            if header.startswith("\ufeff") or not header.strip():
                return None
            frame = pl.scan_csv(
                [str(f.path) for f in files],
                infer_schema=False,
                has_header=True,
                include_file_paths=_SOURCE,
            ).collect()
            check_csv_headers([c for c in frame.columns if c != _SOURCE])
            mapping, extra = map_columns([c for c in frame.columns if c != _SOURCE], stream)
    except FileRejected:
        return None
    numbered = frame.with_columns(_row_numbers()).filter(not_blank(_SOURCE))
    return _per_file(numbered, files, mapping, extra)


def _row_numbers() -> pl.Expr:
    """1-based row numbers within each file, in the file's order."""
    return pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(_SOURCE).alias(ROW_NUMBER)


def _per_file(
    frame: pl.DataFrame, files: list[LandingFile], mapping: dict[str, str], extra: list[str]
) -> list[RawFile]:
    renamed = named(frame, mapping, _SOURCE)
    parts = renamed.partition_by(_SOURCE, as_dict=True, include_key=False)
    empty = renamed.clear().drop(_SOURCE)  # for a file without rows
    shape = layout_of(empty.schema, mapping)
    return [
        RawFile(parts.get((str(file.path),), empty), dict(mapping), list(extra), shape)
        for file in files
    ]
