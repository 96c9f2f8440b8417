"""Read one landing file into a Polars frame named by the contract, or reject the whole file."""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from energy_pipelines.contract import Stream
from energy_pipelines.landing.discover import LandingFile
from energy_pipelines.landing.errors import FileRejected, first_line, printable
from energy_pipelines.settings import FileLimits

ROW_NUMBER = "row_number"
# Seconds since the epoch of 0001-01-02 and 9999-12-30: the calendar Python and Polars handle.
_FIRST_SECOND = -62_135_510_400
_LAST_SECOND = 253_402_128_000
# Peak parse memory per byte of input, measured on this code: a CSV read as text, typed and
# staged takes about 7.4 times its expanded size; Parquet about 4 times its uncompressed size.
CSV_MEMORY_FACTOR = 8
PARQUET_MEMORY_FACTOR = 4
_DUPLICATED_HEADER = re.compile(r"_duplicated_\d+$")

# Parquet types a contract column may arrive in; anything else rejects the file.
_NUMERIC = (
    pl.Float32,
    pl.Float64,
    pl.Int8,
    pl.Int16,
    pl.Int32,
    pl.Int64,
    pl.UInt8,
    pl.UInt16,
    pl.UInt32,
    pl.UInt64,
    pl.Decimal,
)
_EXPECTED_WORDS = {
    "id": "text",
    "kwh": "a number",
    "voltage": "a number",
    "soc": "a number",
    "battery_temp": "a number",
    "timestamp": "a timestamp or ISO-8601 text",
}


@dataclass(frozen=True)
class RawFile:
    """A file's rows as read: contract columns renamed to table names, plus a 1-based row_number.

    `source_names` maps each table column back to the header the file used, so quarantined rows
    show what the gateway actually sent.
    """

    frame: pl.DataFrame
    source_names: dict[str, str]
    extra_columns: list[str]


def _header_bytes(file: LandingFile) -> bytes:
    opener = gzip.open if file.format == "csv.gz" else open
    try:
        with opener(file.path, "rb") as handle:
            return handle.readline(64 * 1024)
    except (OSError, EOFError, zlib.error) as exc:
        raise FileRejected(f"the file cannot be read: {exc}") from exc


def _check_header_encoding(file: LandingFile) -> None:
    """Polars decodes the header leniently, so the header's encoding is checked here."""
    header = _header_bytes(file)
    if header.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileRejected("the file is UTF-16 text: save it as UTF-8 (a byte-order mark is fine)")
    try:
        header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRejected(
            "the header row is not valid UTF-8 text: save the file as UTF-8"
        ) from exc


def _polars_failure(exc: BaseException, file: LandingFile | None = None) -> str:
    first = first_line(exc)
    # The operator knows the file by its landing path, not by where this server keeps it.
    return first.replace(str(file.path), file.relative_path) if file else first


def _read_csv(file: LandingFile) -> pl.DataFrame:
    _check_header_encoding(file)
    try:
        # Every column as text: typing is the validation stage's job, and raw text is what a
        # quarantined row must show.
        frame = pl.read_csv(
            file.path,
            infer_schema=False,
            encoding="utf8",
            has_header=True,
            raise_if_empty=True,
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # polars panics derive from BaseException
        raise _csv_rejection(exc, file) from exc
    _check_csv_headers(frame.columns)
    return frame


def _csv_rejection(exc: BaseException, file: LandingFile) -> FileRejected:
    if isinstance(exc, pl.exceptions.NoDataError):
        return FileRejected("the file is empty: expected a header row and readings")
    message = _polars_failure(exc, file)
    if "utf-8" in message.lower() or "utf8" in message.lower():
        return FileRejected(
            "the file is not valid UTF-8 text: save it as UTF-8 (a byte-order mark is fine)"
        )
    return FileRejected(f"the file is not readable as comma-separated CSV: {message}")


def _check_csv_headers(headers: list[str]) -> None:
    repeated = [c for c in headers if _DUPLICATED_HEADER.search(c)]
    if repeated:
        names = sorted({_DUPLICATED_HEADER.sub("", c) for c in repeated})
        raise FileRejected(f"column(s) {', '.join(names)} appear more than once in the header")


def _normalize_arrow_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_dictionary(kind):
        # pandas' category columns: the values are still text (or numbers).
        return _normalize_arrow_column(column.cast(kind.value_type))
    if pa.types.is_timestamp(kind):
        # Outside years 1..9999 a timestamp is no reading (a flipped bit, a garbage file), and
        # Polars panics converting such values. Clamped to the edge, the row still breaks the
        # same rule (before 2000 / in the future) and is quarantined, not the whole file.
        per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[kind.unit]
        low = (_FIRST_SECOND if kind.unit != "ns" else -(2**63) // per_second + 1) * per_second
        high = (_LAST_SECOND if kind.unit != "ns" else (2**63 - 1) // per_second) * per_second
        raw = column.cast(pa.int64())
        clamped = pc.min_element_wise(
            pc.max_element_wise(raw, low, skip_nulls=False), high, skip_nulls=False
        )
        # Polars cannot parse offsets like +05:30; the instant is the same in UTC.
        return clamped.cast(pa.timestamp(kind.unit, tz="UTC" if kind.tz is not None else None))
    return column


def _check_budget(file: LandingFile, needed: int, limits: FileLimits) -> None:
    if needed > limits.memory_budget_bytes:
        raise FileRejected(
            f"reading the file would take about {needed / 2**20:,.0f} MB of memory, above the "
            f"budget of {limits.memory_budget_bytes / 2**20:,.0f} MB (ENERGY_PARSE_MEMORY_MB): "
            "split it into smaller files"
        )


def _check_parquet_footer(
    file: LandingFile, limits: FileLimits, parquet: pq.ParquetFile | None = None
) -> None:
    """The footer says how many rows to expect, and readers allocate for them: check the claim
    before reading (a tiny file can claim billions of rows)."""
    metadata = (parquet or pq.ParquetFile(file.path)).metadata
    uncompressed = sum(
        metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)
    )
    _check_budget(file, uncompressed * PARQUET_MEMORY_FACTOR, limits)
    total = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        values = [group.column(c).num_values for c in range(group.num_columns)]
        if values and group.num_rows > max(values):
            raise FileRejected(
                f"the Parquet footer is inconsistent: row group {index} claims "
                f"{group.num_rows} rows but its columns hold at most {max(values)} values"
            )
        total += group.num_rows
    if total > limits.max_rows:
        raise FileRejected(
            f"the file holds {total:,} rows, above the limit of {limits.max_rows:,} per file "
            "(ENERGY_MAX_ROWS_PER_FILE): split it into smaller files"
        )


def _parquet_rejection(exc: BaseException, file: LandingFile) -> FileRejected:
    return FileRejected(
        "the file is not a readable Parquet file (truncated or corrupt?): "
        + _polars_failure(exc, file)
    )


def _read_parquet(file: LandingFile, limits: FileLimits) -> pl.DataFrame:
    try:
        # One open for the footer check and the read. A small file reads faster on this
        # thread than through Arrow's thread pool (0.87 -> 0.3 ms for a 100-row file).
        with pq.ParquetFile(file.path) as parquet:
            _check_parquet_footer(file, limits, parquet)
            table = parquet.read(use_threads=parquet.metadata.num_rows > 100_000)
    except FileRejected:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyarrow and polars raise many types for corrupt files
        raise _parquet_rejection(exc, file) from exc
    return _arrow_to_polars(table, file)


def _arrow_to_polars(table: pa.Table, file: LandingFile) -> pl.DataFrame:
    """Normalize, check and convert Parquet columns read as Arrow (a whole file or one batch)."""
    try:
        table = pa.table(
            {name: _normalize_arrow_column(table[name]) for name in table.column_names}
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise _parquet_rejection(exc, file) from exc
    try:
        # Checks string columns are valid UTF-8, which PostgreSQL will insist on.
        table.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise FileRejected(
            f"a text column is not valid UTF-8: {_polars_failure(exc, file)}"
        ) from exc
    try:
        frame = pl.from_arrow(table, rechunk=False)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise FileRejected(
            f"the Parquet columns cannot be read: {_polars_failure(exc, file)}"
        ) from exc
    assert isinstance(frame, pl.DataFrame)
    return frame


def _check_size(file: LandingFile, limits: FileLimits) -> None:
    if file.size_bytes > limits.max_file_bytes:
        raise FileRejected(
            f"the file is {file.size_bytes:,} bytes, above the limit of "
            f"{limits.max_file_bytes:,} (ENERGY_MAX_FILE_MB): split it into smaller files"
        )
    if file.format == "csv":
        _check_budget(file, file.size_bytes * CSV_MEMORY_FACTOR, limits)
    if file.format != "csv.gz":
        return
    # Count the expanded bytes before any parser allocates for them (a gzip bomb is tiny).
    expanded = 0
    try:
        with gzip.open(file.path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                expanded += len(chunk)
                if expanded > limits.max_decompressed_bytes:
                    raise FileRejected(
                        f"the file expands to more than {limits.max_decompressed_bytes:,} bytes "
                        "(ENERGY_MAX_DECOMPRESSED_MB): split it into smaller files"
                    )
    except (OSError, EOFError, zlib.error) as exc:
        raise FileRejected(f"the file is not valid gzip: {exc}") from exc
    _check_budget(file, expanded * CSV_MEMORY_FACTOR, limits)


def _map_columns(headers: list[str], stream: Stream) -> tuple[dict[str, str], list[str]]:
    """Return {table column: header in file} and the headers the contract does not know."""
    stripped = {h.strip(): h for h in headers}
    mapping: dict[str, str] = {}
    missing: list[str] = []
    for field in stream.fields:
        present = [stripped[n] for n in field.accepted_names if n in stripped]
        if len(present) > 1:
            raise FileRejected(
                f"columns {' and '.join(present)} both carry {field.file_name}: keep one of them"
            )
        if not present:
            missing.append(field.file_name)
        else:
            mapping[field.column] = present[0]
    if missing:
        hint = ""
        if len(headers) == 1 and ";" in headers[0]:
            hint = " (the header looks semicolon-separated: files must be comma-separated)"
        raise FileRejected(
            f"required column(s) {', '.join(missing)} missing{hint}; "
            f"expected {', '.join(f.file_name for f in stream.fields)}, found {', '.join(headers)}"
        )
    used = set(mapping.values())
    # Reported in the manifest: PostgreSQL text cannot hold NUL.
    return mapping, [printable(h) for h in headers if h not in used]


def _check_parquet_types(frame: pl.DataFrame, mapping: dict[str, str], stream: Stream) -> None:
    for field in stream.fields:
        header = mapping[field.column]
        dtype = frame.schema[header]
        if dtype in (pl.String, pl.Null):
            continue
        ok = (field.kind == "timestamp" and isinstance(dtype, pl.Datetime)) or (
            field.kind not in ("id", "timestamp") and isinstance(dtype, _NUMERIC)
        )
        if not ok:
            raise FileRejected(
                f"column {header} has type {dtype} but must be {_EXPECTED_WORDS[field.kind]}"
            )


def read_landing_file(
    file: LandingFile, stream: Stream, limits: FileLimits | None = None
) -> RawFile:
    limits = limits or FileLimits()
    _check_size(file, limits)
    frame = _read_csv(file) if file.format in ("csv", "csv.gz") else _read_parquet(file, limits)
    mapping, extra = _map_columns(frame.columns, stream)
    if file.format == "parquet":
        _check_parquet_types(frame, mapping, stream)
    renamed = frame.with_row_index(ROW_NUMBER, offset=1)
    if file.format != "parquet" and frame.width:
        # A blank line is no record (row numbers still count it, to match the file).
        renamed = renamed.filter(~pl.all_horizontal(pl.exclude(ROW_NUMBER).is_null()))
    renamed = renamed.select(
        ROW_NUMBER, *[pl.col(header).alias(column) for column, header in mapping.items()]
    )
    return RawFile(
        frame=renamed.with_columns(pl.col(ROW_NUMBER).cast(pl.Int64)),
        source_names=mapping,
        extra_columns=extra,
    )


def iter_landing_chunks(
    file: LandingFile, stream: Stream, limits: FileLimits | None = None, chunk_rows: int = 1_000_000
) -> Iterator[RawFile]:
    """The file's rows as RawFiles of at most chunk_rows rows each, in file order, with row numbers
    continuing across chunks exactly as read_landing_file numbers them. Header, column mapping and
    type checks happen once, before the first chunk; a problem found later (a corrupt row group,
    invalid UTF-8 in a later part) raises FileRejected from the iterator with the same message
    read_landing_file would give.

    Nothing happens until the first next(), so every FileRejected, the header's too, comes from
    the iterator. A file without rows gives one empty chunk. Of a Parquet file only the
    contract's columns are read.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    limits = limits or FileLimits()
    _check_size(file, limits)
    if file.format == "parquet":
        mapping, extra, empty, frames = _parquet_chunks(file, stream, limits, chunk_rows)
    else:
        mapping, extra, empty, frames = _csv_chunks(file, stream, chunk_rows)
    yield from _raw_files(frames, empty, mapping, extra, chunk_rows)


_Frame = TypeVar("_Frame", pl.DataFrame, pl.LazyFrame)
_Item = TypeVar("_Item")


def _named(frame: _Frame, mapping: dict[str, str]) -> _Frame:
    """The row number and the contract's columns, renamed to table names."""
    return frame.select(
        pl.col(ROW_NUMBER).cast(pl.Int64),
        *[pl.col(header).alias(column) for column, header in mapping.items()],
    )


def _rejecting(
    items: Iterator[_Item], rejection: Callable[[BaseException], FileRejected]
) -> Iterator[_Item]:
    """`items`, with their reader's failures turned into FileRejected."""
    while True:
        # Only next() is guarded: what the consumer throws in at the yield must pass untouched.
        try:
            item = next(items)
        except StopIteration:
            return
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # polars panics derive from BaseException
            raise rejection(exc) from exc
        yield item


def _raw_files(
    frames: Iterator[pl.DataFrame],
    empty: pl.DataFrame,
    mapping: dict[str, str],
    extra: list[str],
    chunk_rows: int,
) -> Iterator[RawFile]:
    """The frames regrouped into chunks of chunk_rows rows (the last may be shorter): readers
    hand over batches of their own sizes, e.g. ending where a Parquet row group ends."""
    held, produced = empty, False
    for frame in frames:
        held = pl.concat([held, frame]) if held.height else frame
        while held.height >= chunk_rows:
            yield RawFile(held.head(chunk_rows), dict(mapping), list(extra))
            held, produced = held.slice(chunk_rows), True
    if held.height or not produced:
        yield RawFile(held, dict(mapping), list(extra))


def _csv_chunks(
    file: LandingFile, stream: Stream, chunk_rows: int
) -> tuple[dict[str, str], list[str], pl.DataFrame, Iterator[pl.DataFrame]]:
    _check_header_encoding(file)
    scan = pl.scan_csv(
        file.path,
        infer_schema=False,
        encoding="utf8",
        has_header=True,
        raise_if_empty=True,
        # A landing name may hold [ ] * ?: it names this one file, not a pattern.
        glob=False,
    )
    try:
        headers = scan.collect_schema().names()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise _csv_rejection(exc, file) from exc
    _check_csv_headers(headers)
    mapping, extra = _map_columns(headers, stream)
    # Numbered before blank lines are dropped, so the numbers count them, as in read_landing_file.
    query = _named(
        scan.with_row_index(ROW_NUMBER, offset=1).filter(
            ~pl.all_horizontal(pl.exclude(ROW_NUMBER).is_null())
        ),
        mapping,
    )

    def frames() -> Iterator[pl.DataFrame]:
        # Named, not "auto": the engine affinity setting could pick the in-memory engine, which
        # reads the whole file first.
        yield from query.collect_batches(chunk_size=chunk_rows, engine="streaming")

    empty = pl.DataFrame(schema={ROW_NUMBER: pl.Int64, **dict.fromkeys(mapping, pl.String)})
    return mapping, extra, empty, _rejecting(frames(), lambda exc: _csv_rejection(exc, file))


def _parquet_chunks(
    file: LandingFile, stream: Stream, limits: FileLimits, chunk_rows: int
) -> tuple[dict[str, str], list[str], pl.DataFrame, Iterator[pl.DataFrame]]:
    try:
        _check_parquet_footer(file, limits)
        parquet = pq.ParquetFile(file.path)
        schema = parquet.schema_arrow
    except FileRejected:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise _parquet_rejection(exc, file) from exc
    # The file's columns without rows go through read_landing_file's steps, so header and type
    # problems are rejected as it rejects them.
    empty = _arrow_to_polars(schema.empty_table(), file)
    mapping, extra = _map_columns(empty.columns, stream)
    _check_parquet_types(empty, mapping, stream)
    empty = _named(empty.with_row_index(ROW_NUMBER, offset=1), mapping)
    headers = list(mapping.values())

    def batches() -> Iterator[pa.RecordBatch]:
        with parquet:
            yield from parquet.iter_batches(batch_size=chunk_rows, columns=headers)

    def frames() -> Iterator[pl.DataFrame]:
        offset = 1
        for batch in _rejecting(batches(), lambda exc: _parquet_rejection(exc, file)):
            frame = _arrow_to_polars(pa.Table.from_batches([batch]), file)
            yield _named(frame.with_row_index(ROW_NUMBER, offset=offset), mapping)
            offset += frame.height

    return mapping, extra, empty, frames()


_FAST_DTYPES = (pl.String, pl.Float64, pl.Float32, pl.Int64, pl.Int32)
