"""The checks of a landing file before its rows are read, each written once for every reader:
size and parse memory, header encoding, column names and mapping, column types, the Parquet
footer's claims. Each raises FileRejected with words for the gateway operator."""

from __future__ import annotations

import gzip
import re
import zlib

import polars as pl
import pyarrow.parquet as pq

from energy_pipelines.contract import Stream
from energy_pipelines.landing.discover import LandingFile
from energy_pipelines.landing.errors import FileRejected, printable
from energy_pipelines.settings import FileLimits

# Peak parse memory per byte of input, measured on this code: a CSV read as text, typed and
# staged takes about 7.4 times its expanded size; Parquet about 4 times its uncompressed size.
CSV_MEMORY_FACTOR = 8
PARQUET_MEMORY_FACTOR = 4
_DUPLICATED_HEADER = re.compile(r"_duplicated_\d+$")


def check_size(file: LandingFile, limits: FileLimits) -> None:
    """The file's size, and the memory its parse would take, within the limits."""
    if file.size_bytes > limits.max_file_bytes:
        raise FileRejected(
            f"the file is {file.size_bytes:,} bytes, above the limit of "
            f"{limits.max_file_bytes:,} (ENERGY_MAX_FILE_MB): split it into smaller files"
        )
    if file.format == "csv":
        _check_budget(file.size_bytes * CSV_MEMORY_FACTOR, limits)
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
    _check_budget(expanded * CSV_MEMORY_FACTOR, limits)


def _check_budget(needed: int, limits: FileLimits) -> None:
    if needed > limits.memory_budget_bytes:
        raise FileRejected(
            f"reading the file would take about {needed / 2**20:,.0f} MB of memory, above the "
            f"budget of {limits.memory_budget_bytes / 2**20:,.0f} MB (ENERGY_PARSE_MEMORY_MB): "
            "split it into smaller files"
        )


def header_bytes(file: LandingFile) -> bytes:
    """The file's first line as bytes (expanded, for a .csv.gz)."""
    opener = gzip.open if file.format == "csv.gz" else open
    try:
        with opener(file.path, "rb") as handle:
            return handle.readline(64 * 1024)
    except (OSError, EOFError, zlib.error) as exc:
        raise FileRejected(f"the file cannot be read: {exc}") from exc


def check_header_encoding(file: LandingFile) -> None:
    """Polars decodes the header leniently, so the header's encoding is checked here."""
    header = header_bytes(file)
    if header.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileRejected("the file is UTF-16 text: save it as UTF-8 (a byte-order mark is fine)")
    try:
        header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRejected(
            "the header row is not valid UTF-8 text: save the file as UTF-8"
        ) from exc


def check_unique_headers(headers: list[str]) -> None:
    """No column name twice: which one would be the reading?"""
    repeated = sorted({h for h in headers if headers.count(h) > 1})
    if repeated:
        raise FileRejected(f"column(s) {', '.join(repeated)} appear more than once in the header")


def check_csv_headers(headers: list[str]) -> None:
    """Polars renames a repeated CSV header to <name>_duplicated_<n>."""
    repeated = [c for c in headers if _DUPLICATED_HEADER.search(c)]
    if repeated:
        names = sorted({_DUPLICATED_HEADER.sub("", c) for c in repeated})
        raise FileRejected(f"column(s) {', '.join(names)} appear more than once in the header")


def check_parquet_footer(metadata: pq.FileMetaData, limits: FileLimits) -> None:
    """The footer says how many rows to expect, and readers allocate for them: check the claim
    before reading (a tiny file can claim billions of rows)."""
    uncompressed = sum(
        metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)
    )
    _check_budget(uncompressed * PARQUET_MEMORY_FACTOR, limits)
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


def map_columns(headers: list[str], stream: Stream) -> tuple[dict[str, str], list[str]]:
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


def check_types(schema: pl.Schema, mapping: dict[str, str], stream: Stream) -> None:
    """Each contract column in a type its kind may arrive in (CSV columns are all text)."""
    for field in stream.fields:
        header = mapping[field.column]
        kind = field.value_kind
        if not kind.accepts_file_dtype(schema[header]):
            raise FileRejected(
                f"column {header} has type {schema[header]} but must be {kind.file_type_words}"
            )
