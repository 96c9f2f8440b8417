"""Hostile landing files through the real loader.

Every kind of hostile file is dropped into landing storage next to a good sibling file, and
`ingest_stream` runs for real against PostgreSQL. For each kind the test asserts:

* the run survives: no exception escapes `ingest_stream`;
* nothing valid is lost: the valid rows of the file and the sibling file are loaded;
* the bad part is quarantined with a reason a gateway operator understands: the whole file in
  landing/_quarantine/<stream>/ with <name>.error.json, or single rows in rejected_rows with
  the column and the rule;
* the manifest reconciles: rows_read = loaded + rejected + duplicate + conflicting, and history
  and quarantine hold exactly those rows;
* nothing outside the landing root is read, moved or written (a canary directory keeps its
  bytes, mtime and, where the file system records reads, its atime).

Nothing of energy_pipelines is mocked. The race kinds wrap a function of the ingest module to
change the file between two real steps.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
import pwd
import random
import re
import shutil
import stat
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import energy_pipelines.ingest.chunks as ingest_chunks
import energy_pipelines.ingest.stream as ingest_stream_module
from energy_pipelines.contract import CORRELATION, METER, VEHICLE, Stream
from energy_pipelines.ingest import ingest_stream
from energy_pipelines.load.reconcile import reconcile_run
from energy_pipelines.settings import Settings
from tests.conftest import query
from tests.helpers import METER_HEADER, VEHICLE_HEADER

RUN_ID = "hostile"
TS = datetime(2026, 2, 11, 10, 30, tzinfo=UTC)
TS_TEXT = "2026-02-11T10:30:00Z"
GOOD = f"m-ok,0.5,230,{TS_TEXT}"
GOOD_STORED = ("m-ok", TS, 0.5, 230.0)
CORRELATION_HEADER = "meterId,vehicleId"

# The gzip bomb: one repeated valid line, ENERGY_BOMB_MB of text (default 200 MB).
BOMB_MB = int(os.environ.get("ENERGY_BOMB_MB", "200"))
BOMB_LINE = f"m-bomb,0.5,230,{TS_TEXT}\n".encode()
# Peak resident memory a run may add, by kind (MB). The gzip bomb really holds BOMB_MB of
# rows; the crafted Parquet footer holds two rows, whatever it claims.
BOMB_MEMORY_MB = 2560 * BOMB_MB / 200
FOOTER_CLAIM_MEMORY_MB = 512

SIBLINGS = {
    "meter": (METER_HEADER, "sibling,1.25,231,2026-02-11T11:00:00Z"),
    "vehicle": (VEHICLE_HEADER, "sibling,50,1.25,20,2026-02-11T11:00:00Z"),
    "correlation": (CORRELATION_HEADER, "sibling-m,sibling-v"),
}
SIBLING_NAME = "zz-sibling.csv"  # sorts after every hostile file: a crash would lose it


# --------------------------------------------------------------------------------------------
# file builders
# --------------------------------------------------------------------------------------------


def csv(*rows: str, header: str = METER_HEADER, eol: str = "\n") -> bytes:
    return (eol.join([header, *rows]) + eol).encode("utf-8")


def parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def meter_table(**overrides: Any) -> pa.Table:
    columns: dict[str, Any] = {
        "meterId": pa.array(["m-p1", "m-p2"]),
        "kwhConsumedAc": pa.array([0.5, 0.75]),
        "voltage": pa.array([230.0, 231.0]),
        "timestamp": pa.array([TS, TS + timedelta(minutes=1)], pa.timestamp("us", tz="UTC")),
    }
    columns.update(overrides)
    return pa.table(columns)


PARQUET_STORED = (("m-p1", TS, 0.5, 230.0), ("m-p2", TS + timedelta(minutes=1), 0.75, 231.0))


def one_timestamp_table(ts: pa.Array) -> pa.Table:
    return pa.table(
        {
            "meterId": pa.array(["m-ts"]),
            "kwhConsumedAc": pa.array([0.5]),
            "voltage": pa.array([230.0]),
            "timestamp": ts,
        }
    )


# Thrift compact protocol, just enough to find the i64 fields of a Parquet footer.
def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _skip(data: bytes, pos: int, kind: int, path: tuple, ints: list) -> int:
    """Skip one compact-protocol value; record (field path, start, end) of every integer."""
    if kind in (1, 2):
        return pos
    if kind == 3:
        return pos + 1
    if kind in (4, 5, 6):
        start = pos
        _, pos = _varint(data, pos)
        ints.append((path, start, pos))
        return pos
    if kind == 7:
        return pos + 8
    if kind == 8:
        size, pos = _varint(data, pos)
        return pos + size
    if kind in (9, 10):
        header = data[pos]
        pos += 1
        size, element = header >> 4, header & 0x0F
        if size == 15:
            size, pos = _varint(data, pos)
        for index in range(size):
            if element in (1, 2):
                pos += 1
            else:
                pos = _skip(data, pos, element, (*path, index), ints)
        return pos
    if kind == 11:
        size, pos = _varint(data, pos)
        if size:
            types = data[pos]
            pos += 1
            for _ in range(size):
                pos = _skip(data, pos, types >> 4, path, ints)
                pos = _skip(data, pos, types & 0x0F, path, ints)
        return pos
    if kind == 12:
        field_id = 0
        while True:
            header = data[pos]
            pos += 1
            if header == 0:
                return pos
            delta, field_kind = header >> 4, header & 0x0F
            if delta:
                field_id += delta
            else:
                zigzag, pos = _varint(data, pos)
                field_id = (zigzag >> 1) ^ -(zigzag & 1)
            pos = _skip(data, pos, field_kind, (*path, field_id), ints)
    raise ValueError(f"unknown thrift compact type {kind}")


def parquet_claiming_rows(rows: int) -> bytes:
    """A valid two-row Parquet file whose footer says it holds `rows` rows: FileMetaData.num_rows
    (field 3) and every RowGroup.num_rows (field 4 -> list -> field 3) are rewritten."""
    data = parquet(meter_table())
    assert data.endswith(b"PAR1")
    footer_length = struct.unpack("<I", data[-8:-4])[0]
    footer = data[-8 - footer_length : -8]
    ints: list = []
    assert _skip(footer, 0, 12, (), ints) == footer_length
    targets = [
        (start, end)
        for path, start, end in ints
        if path == (3,) or (len(path) == 3 and path[0] == 4 and path[2] == 3)
    ]
    assert len(targets) == 2, targets
    patched = bytearray(footer)
    for start, end in sorted(targets, reverse=True):
        patched[start:end] = _encode_varint(rows << 1)  # zigzag of a positive number
    out = data[: -8 - footer_length] + bytes(patched) + struct.pack("<I", len(patched)) + b"PAR1"
    assert pq.ParquetFile(io.BytesIO(out)).metadata.num_rows == rows
    return out


def parquet_with_invalid_utf8() -> bytes:
    """A string column whose bytes are not UTF-8: written plain and uncompressed, then patched
    (Parquet pages carry no checksum unless asked to)."""
    table = meter_table(meterId=pa.array(["m-p1", "m-QQQQ"]))
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="none", use_dictionary=False, write_statistics=False)
    data = buffer.getvalue()
    assert data.count(b"QQQQ") == 1
    return data.replace(b"QQQQ", b"\xff\xfe\xfd\xfc")


def parquet_footer_past_eof() -> bytes:
    data = parquet(meter_table())
    return data[:-8] + struct.pack("<I", 1_000_000_000) + b"PAR1"


BOMB_ROWS_PER_CHUNK = (1024 * 1024) // len(BOMB_LINE)
BOMB_CHUNKS = (BOMB_MB * 1024 * 1024) // (BOMB_ROWS_PER_CHUNK * len(BOMB_LINE))
BOMB_ROWS = BOMB_ROWS_PER_CHUNK * BOMB_CHUNKS


def gzip_bomb() -> bytes:
    """~BOMB_MB of one repeated line, compressed (about 3 kB per MB); streamed, so cheap."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    chunk = BOMB_LINE * BOMB_ROWS_PER_CHUNK
    parts = [compressor.compress((METER_HEADER + "\n").encode())]
    parts.extend(compressor.compress(chunk) for _ in range(BOMB_CHUNKS))
    parts.append(compressor.flush())
    return b"".join(parts)


# --------------------------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------------------------


@dataclass
class Seen:
    """What a kind's extra check may look at."""

    db: Any
    landing: Path
    outside: Path
    manifest: dict[str, Any] | None
    moved_to: Path | None


@dataclass(frozen=True)
class Kind:
    name: str
    # Where the file goes, relative to landing/<stream>/.
    file: str
    # "loaded": rows split into history and rejected_rows; "quarantined": the whole file;
    # "bounded": loaded or quarantined, within a memory bound; "ignored": never touched;
    # "vanished": gone before it was read, skipped without a trace.
    outcome: str
    content: bytes | Callable[[], bytes] | None = None
    stream: Stream = METER
    # Words the quarantine reason must contain (case-insensitive).
    error: tuple[str, ...] = ()
    # rows_read, rows_loaded, rows_rejected, rows_duplicate, rows_conflicting
    counts: tuple[int, int, int, int, int] | None = None
    # (row_number, column_name, words of the rule) for every rejected_rows row of the file.
    rejects: tuple[tuple[int, str | None, str], ...] = ()
    # The file's rows in history, in key order (columns of the contract).
    stored: tuple[tuple, ...] | None = None
    # Builds a non-regular entry (symlink, folder, FIFO): (stream folder, outside folder).
    make: Callable[[Path, Path], None] | None = None
    race: str | None = None
    max_memory_mb: float | None = None
    check: Callable[[Seen], None] | None = None


def _symlink_to_outside_file(stream_dir: Path, outside: Path) -> None:
    (stream_dir / "evil.csv").symlink_to(outside / "canary.csv")


def _symlink_to_outside_folder(stream_dir: Path, outside: Path) -> None:
    (stream_dir / "gw-link").symlink_to(outside / "gw", target_is_directory=True)


def _folder_named_like_csv(stream_dir: Path, outside: Path) -> None:
    (stream_dir / "x.csv").mkdir()


def _fifo_named_csv(stream_dir: Path, outside: Path) -> None:
    os.mkfifo(stream_dir / "x.csv")


def _history(db: Any, stream: Stream, file_id: int) -> list[tuple]:
    return query(
        db,
        # Key first, then the values: (id, ts, values...) for readings.
        f"SELECT {', '.join([*stream.key, *stream.value_columns])} FROM {stream.table}"
        f" WHERE file_id = $1 ORDER BY {', '.join(stream.key)}",
        (file_id,),
    )


def _minus_zero_is_stored_as_zero(seen: Seen) -> None:
    assert seen.manifest is not None
    [(kwh,)] = query(
        seen.db,
        "SELECT kwh_consumed_ac FROM meter_readings_history WHERE file_id = $1",
        (seen.manifest["file_id"],),
    )
    assert kwh == 0.0 and math.copysign(1.0, kwh) == 1.0


def _extra_columns_are_recorded(seen: Seen) -> None:
    assert seen.manifest is not None
    assert list(seen.manifest["extra_columns"]) == ["firmware", "note"]


def _history_table_survives(seen: Seen) -> None:
    assert query(seen.db, "SELECT to_regclass('meter_readings_history')::text") == [
        ("meter_readings_history",)
    ]


def _long_field_is_kept_in_quarantine(seen: Seen) -> None:
    assert seen.manifest is not None
    [(raw,)] = query(
        seen.db,
        "SELECT raw_values::text FROM rejected_rows WHERE file_id = $1",
        (seen.manifest["file_id"],),
    )
    assert len(json.loads(raw)["meterId"]) == 5 * 1024 * 1024


def _manifest_path_keeps_the_newline(seen: Seen) -> None:
    assert seen.manifest is not None
    assert seen.manifest["path"] == "meter/bad\nname.csv"


def _rows_match_the_archived_bytes(seen: Seen) -> None:
    """A file that changed while it was handled: what history holds must be what the archive
    and the manifest describe (the rows of the archived bytes, their sha256 and size)."""
    assert seen.manifest is not None and seen.moved_to is not None
    archived = seen.moved_to.read_bytes()
    data_rows = [line for line in archived.decode().splitlines()[1:] if line]
    assert seen.manifest["rows_read"] == len(data_rows)
    assert seen.manifest["rows_loaded"] == len(data_rows)


def _nul_rows(id_value: str, voltage: str) -> bytes:
    return csv(f"{id_value},0.5,{voltage},{TS_TEXT}", GOOD)


LATE_ROW = "m-late,0.5,230,2026-02-11T10:45:00Z\n"

KINDS: list[Kind] = [
    # ---- Parquet, whole file --------------------------------------------------------------
    Kind(
        "truncated_parquet",
        "cut.parquet",
        "quarantined",
        content=lambda: parquet(meter_table())[:300],
        error=("not a readable parquet file",),
    ),
    Kind(
        "zero_byte_parquet",
        "empty.parquet",
        "quarantined",
        content=b"",
        error=("not a readable parquet file", "0 bytes"),
    ),
    Kind(
        "parquet_id_column_of_integers",
        "int-ids.parquet",
        "quarantined",
        content=lambda: parquet(meter_table(meterId=pa.array([1, 2]))),
        error=("column meterId", "must be text"),
    ),
    Kind(
        "parquet_timestamp_column_of_booleans",
        "bool-ts.parquet",
        "quarantined",
        content=lambda: parquet(meter_table(timestamp=pa.array([True, False]))),
        error=("column timestamp", "must be a timestamp"),
    ),
    Kind(
        "parquet_footer_claims_billions_of_rows",
        "billions.parquet",
        "bounded",
        content=lambda: parquet_claiming_rows(5_000_000_000),
        counts=(2, 2, 0, 0, 0),
        stored=PARQUET_STORED,
        error=("rows",),
        max_memory_mb=FOOTER_CLAIM_MEMORY_MB,
    ),
    Kind(
        "parquet_footer_length_points_past_eof",
        "past-eof.parquet",
        "quarantined",
        content=parquet_footer_past_eof,
        error=("not a readable parquet file", "footer"),
    ),
    Kind(
        "parquet_that_is_csv",
        "csv-inside.parquet",
        "quarantined",
        content=csv(GOOD),
        error=("not a readable parquet file",),
    ),
    Kind(
        "parquet_duplicate_column_names",
        "dup-columns.parquet",
        "quarantined",
        content=lambda: parquet(
            pa.Table.from_arrays(
                [
                    pa.array(["m-1"]),
                    pa.array(["m-2"]),
                    pa.array([0.5]),
                    pa.array([230.0]),
                    pa.array([TS], pa.timestamp("us", tz="UTC")),
                ],
                names=["meterId", "meterId", "kwhConsumedAc", "voltage", "timestamp"],
            )
        ),
        error=("meterId",),
    ),
    Kind(
        "parquet_string_with_invalid_utf8",
        "bad-utf8.parquet",
        "quarantined",
        content=parquet_with_invalid_utf8,
        error=("utf-8",),
    ),
    # ---- Parquet, rows ----------------------------------------------------------------------
    Kind(
        "parquet_zero_rows",
        "zero-rows.parquet",
        "loaded",
        content=lambda: parquet(meter_table().slice(0, 0)),
        counts=(0, 0, 0, 0, 0),
        stored=(),
    ),
    Kind(
        "parquet_nulls_in_every_column",
        "nulls.parquet",
        "loaded",
        content=lambda: parquet(
            meter_table(
                meterId=pa.array([None, "m-p2"], pa.string()),
                kwhConsumedAc=pa.array([None, 0.75], pa.float64()),
                voltage=pa.array([None, 231.0], pa.float64()),
                timestamp=pa.array([None, TS + timedelta(minutes=1)], pa.timestamp("us", "UTC")),
            )
        ),
        counts=(2, 1, 1, 0, 0),
        rejects=(
            (1, "meterId", "is missing"),
            (1, "kwhConsumedAc", "is missing"),
            (1, "voltage", "is missing"),
            (1, "timestamp", "is missing"),
        ),
        stored=(PARQUET_STORED[1],),
    ),
    Kind(
        "parquet_columns_of_null_type",
        "null-type.parquet",
        "loaded",
        content=lambda: parquet(
            pa.table({n: pa.nulls(2) for n in ("meterId", "kwhConsumedAc", "voltage", "timestamp")})
        ),
        counts=(2, 0, 2, 0, 0),
        rejects=tuple(
            (row, column, "is missing")
            for row in (1, 2)
            for column in ("meterId", "kwhConsumedAc", "voltage", "timestamp")
        ),
        stored=(),
    ),
    Kind(
        "parquet_dictionary_encoded_ids",
        "dict.parquet",
        "loaded",
        content=lambda: parquet(
            meter_table(meterId=pa.array([" m-p1", "m-p2 "]).dictionary_encode())
        ),
        counts=(2, 2, 0, 0, 0),
        stored=((" m-p1", *PARQUET_STORED[0][1:]), ("m-p2 ", *PARQUET_STORED[1][1:])),
    ),
    Kind(
        "parquet_timestamp_ns",
        "ns.parquet",
        "loaded",
        content=lambda: parquet(
            one_timestamp_table(
                pa.array([int(TS.timestamp()) * 10**9 + 123_456_789], pa.timestamp("ns", tz="UTC"))
            )
        ),
        counts=(1, 1, 0, 0, 0),
        # Stored with microsecond precision: the nanoseconds are cut off.
        stored=(("m-ts", TS + timedelta(microseconds=123_456), 0.5, 230.0),),
    ),
    Kind(
        "parquet_timestamp_beyond_year_9999",
        "far-future.parquet",
        "loaded",
        content=lambda: parquet(
            meter_table(
                timestamp=pa.array(
                    [int(TS.timestamp()) * 10**6, 2**62], pa.timestamp("us", tz="UTC")
                )
            )
        ),
        counts=(2, 1, 1, 0, 0),
        rejects=((2, "timestamp", "minutes after the ingestion time"),),
        stored=(PARQUET_STORED[0],),
    ),
    Kind(
        "parquet_timestamp_ms_without_zone",
        "ms.parquet",
        "loaded",
        content=lambda: parquet(
            one_timestamp_table(pa.array([int(TS.timestamp()) * 1000 + 250], pa.timestamp("ms")))
        ),
        counts=(1, 1, 0, 0, 0),
        stored=(("m-ts", TS + timedelta(milliseconds=250), 0.5, 230.0),),
    ),
    Kind(
        "parquet_timestamp_plus_0530",
        "ist.parquet",
        "loaded",
        content=lambda: parquet(
            one_timestamp_table(
                pa.array(
                    [TS.astimezone(timezone(timedelta(hours=5, minutes=30)))],
                    pa.timestamp("us", tz="+05:30"),
                )
            )
        ),
        counts=(1, 1, 0, 0, 0),
        stored=(("m-ts", TS, 0.5, 230.0),),
    ),
    Kind(
        "parquet_nested_extra_column",
        "nested.parquet",
        "loaded",
        content=lambda: parquet(
            meter_table().append_column("meta", pa.array([{"a": [1, 2]}, {"a": []}]))
        ),
        counts=(2, 2, 0, 0, 0),
        stored=PARQUET_STORED,
    ),
    # ---- CSV, whole file --------------------------------------------------------------------
    Kind(
        "zero_byte_csv",
        "empty.csv",
        "quarantined",
        content=b"",
        error=("empty",),
    ),
    Kind(
        "bom_only_csv",
        "bom.csv",
        "quarantined",
        content=b"\xef\xbb\xbf",
        error=("empty",),
    ),
    Kind(
        "gzip_bomb",
        "bomb.csv.gz",
        "bounded",
        content=gzip_bomb,
        counts=(BOMB_ROWS, 1, 0, BOMB_ROWS - 1, 0),
        stored=(("m-bomb", TS, 0.5, 230.0),),
        error=("large",),
        max_memory_mb=BOMB_MEMORY_MB,
    ),
    Kind(
        "csv_gz_that_is_not_gzip",
        "plain.csv.gz",
        "quarantined",
        content=csv(GOOD),
        error=("not valid gzip",),
    ),
    Kind(
        "csv_gz_truncated",
        "cut.csv.gz",
        "quarantined",
        content=gzip.compress(csv(GOOD), mtime=0)[:-12],
        error=("not valid gzip", "ended before the end-of-stream"),
    ),
    Kind(
        "invalid_utf8_in_a_value",
        "latin1.csv",
        "quarantined",
        content=csv(GOOD) + "m-Zähler,0.5,230,2026-02-11T10:31:00Z\n".encode("latin-1"),
        error=("utf-8",),
    ),
    Kind(
        "utf16_file",
        "utf16.csv",
        "quarantined",
        content="\n".join([METER_HEADER, GOOD, ""]).encode("utf-16"),
        error=("utf-16",),
    ),
    Kind(
        "semicolon_delimited",
        "semi.csv",
        "quarantined",
        content=csv(GOOD.replace(",", ";"), header=METER_HEADER.replace(",", ";")),
        error=("semicolon",),
    ),
    Kind(
        "unbalanced_quotes",
        "quotes.csv",
        "quarantined",
        content=csv('"m-1,0.5,230,2026-02-11T10:31:00Z', GOOD),
        error=("not readable as comma-separated csv",),
    ),
    Kind(
        "row_with_too_many_fields",
        "wide-row.csv",
        "quarantined",
        content=csv(GOOD, f"m-2,0.5,230,{TS_TEXT},surplus"),
        error=("more fields",),
    ),
    Kind(
        "duplicate_header",
        "dup-header.csv",
        "quarantined",
        content=csv(f"m-1,m-2,0.5,230,{TS_TEXT}", header="meterId,meterId," + METER_HEADER[8:]),
        error=("meterId", "more than once"),
    ),
    Kind(
        "missing_required_column",
        "no-voltage.csv",
        "quarantined",
        content=csv(f"m-1,0.5,{TS_TEXT}", header="meterId,kwhConsumedAc,timestamp"),
        error=("required column", "voltage", "missing"),
    ),
    Kind(
        "mixed_case_headers",
        "case.csv",
        "quarantined",
        content=csv(GOOD, header="MeterId,KwhConsumedAC,Voltage,TimeStamp"),
        error=("required column", "meterId", "found MeterId"),
    ),
    Kind(
        "binary_garbage_named_csv",
        "garbage.csv",
        "quarantined",
        content=random.Random(4).randbytes(4096),
        error=("utf-8",),
    ),
    Kind(
        "csv_that_is_parquet",
        "parquet-inside.csv",
        "quarantined",
        content=lambda: parquet(meter_table()),
        error=("utf-8",),
    ),
    # ---- CSV, rows --------------------------------------------------------------------------
    Kind(
        "header_only",
        "header.csv",
        "loaded",
        content=csv(),
        counts=(0, 0, 0, 0, 0),
        stored=(),
    ),
    Kind(
        "nul_byte_in_an_id",
        "nul-id.csv",
        "loaded",
        content=_nul_rows("m-\x001", "230"),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "meterId", "control characters"),),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "nul_byte_in_a_number",
        "nul-number.csv",
        "loaded",
        content=_nul_rows("m-1", "23\x000"),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "voltage", "is not a number"),),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "nul_byte_in_a_file_level_error",
        "nul-quote.csv",
        "quarantined",
        # The parser's message quotes the line, NUL included.
        content=csv('"m-\x001,0.5,230,2026-02-11T10:31:00Z', GOOD),
        error=("not readable as comma-separated csv",),
    ),
    Kind(
        "nul_byte_in_an_extra_column_name",
        "nul-header.csv",
        "loaded",
        content=csv(f"{GOOD},x", header=METER_HEADER + ",no\x00te"),
        counts=(1, 1, 0, 0, 0),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "extremely_long_line_5mb_field",
        "long.csv",
        "loaded",
        content=lambda: csv("L" * (5 * 1024 * 1024) + f",0.5,230,{TS_TEXT}", GOOD),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "meterId", "at most 64 characters"),),
        stored=(GOOD_STORED,),
        check=_long_field_is_kept_in_quarantine,
    ),
    Kind(
        "nan_inf_minus_inf_minus_zero",
        "nan.csv",
        "loaded",
        content=csv(
            f"m-nan,NaN,230,{TS_TEXT}",
            f"m-inf,0.5,inf,{TS_TEXT}",
            f"m-ninf,-inf,230,{TS_TEXT}",
            f"m-zero,-0,230,{TS_TEXT}",
        ),
        counts=(4, 1, 3, 0, 0),
        rejects=(
            (1, "kwhConsumedAc", "finite number"),
            (2, "voltage", "finite number"),
            (3, "kwhConsumedAc", "finite number"),
        ),
        stored=(("m-zero", TS, 0.0, 230.0),),
        check=_minus_zero_is_stored_as_zero,
    ),
    Kind(
        "numbers_with_units",
        "units.csv",
        "loaded",
        content=csv(f"m-1,0.5kWh,230,{TS_TEXT}", f"m-2,0.5,230V,{TS_TEXT}", GOOD),
        counts=(3, 1, 2, 0, 0),
        rejects=((1, "kwhConsumedAc", "not a number"), (2, "voltage", "not a number")),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "decimal_commas",
        "comma.csv",
        "loaded",
        content=csv(f'm-1,"1,5",230,{TS_TEXT}', GOOD),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "kwhConsumedAc", "no units or commas"),),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "epoch_seconds",
        "epoch-s.csv",
        "loaded",
        content=csv(f"m-1,0.5,230,{int(TS.timestamp())}", GOOD),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "timestamp", "ISO-8601"),),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "epoch_milliseconds",
        "epoch-ms.csv",
        "loaded",
        content=csv(f"m-1,0.5,230,{int(TS.timestamp()) * 1000}", GOOD),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "timestamp", "ISO-8601"),),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "year_1970",
        "1970.csv",
        "loaded",
        content=csv("m-1,0.5,230,1970-01-01T00:00:00Z", GOOD),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "timestamp", "must not be before 2000-01-01"),),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "year_2100",
        "2100.csv",
        "loaded",
        content=csv("m-1,0.5,230,2100-01-01T00:00:00Z", GOOD),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "timestamp", "minutes after the ingestion time"),),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "year_0000",
        "year-0.csv",
        "loaded",
        content=csv("m-1,0.5,230,0000-01-01T00:00:00Z", GOOD),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "timestamp", "must not be before 2000-01-01|not a valid ISO-8601"),),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "year_beyond_9999",
        "year-10000.csv",
        "loaded",
        content=csv("m-1,0.5,230,+10000-01-01T00:00:00Z", GOOD),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "timestamp", "minutes after the ingestion time|not a valid ISO-8601"),),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "local_time_without_offset_is_utc",
        "naive.csv",
        "loaded",
        content=csv("m-1,0.5,230,2026-02-11T10:30:00", "m-2,0.5,230,2026-02-11 11:30:00.5"),
        counts=(2, 2, 0, 0, 0),
        stored=(
            ("m-1", TS, 0.5, 230.0),
            ("m-2", TS + timedelta(hours=1, milliseconds=500), 0.5, 230.0),
        ),
    ),
    Kind(
        "february_30",
        "feb30.csv",
        "loaded",
        content=csv("m-1,0.5,230,2026-02-30T10:30:00Z", GOOD),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "timestamp", "not a valid ISO-8601 timestamp"),),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "ids_with_leading_and_trailing_spaces",
        "spaces.csv",
        "loaded",
        content=csv(f"  m-1  ,0.5,230,{TS_TEXT}", f" m-1,0.5,230,{TS_TEXT}"),
        counts=(2, 2, 0, 0, 0),
        stored=((" m-1", TS, 0.5, 230.0), ("  m-1  ", TS, 0.5, 230.0)),
    ),
    Kind(
        "ids_of_10_kb",
        "long-id.csv",
        "loaded",
        content=csv("m" * 10_240 + f",0.5,230,{TS_TEXT}", GOOD),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "meterId", "at most 64 characters"),),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "id_carrying_sql",
        "sql.csv",
        "loaded",
        content=csv(f"'; DROP TABLE meter_readings_history; --,0.5,230,{TS_TEXT}"),
        counts=(1, 1, 0, 0, 0),
        stored=(("'; DROP TABLE meter_readings_history; --", TS, 0.5, 230.0),),
        check=_history_table_survives,
    ),
    Kind(
        "ids_carrying_spreadsheet_formulas",
        "formula.csv",
        "loaded",
        content=csv(
            f'"=HYPERLINK(""http://x"",""y"")",0.5,230,{TS_TEXT}',
            f"+cmd|' /C calc'!A0,0.5,230,{TS_TEXT}",
            f"@SUM(1+1),0.5,230,{TS_TEXT}",
        ),
        counts=(3, 3, 0, 0, 0),
        stored=(
            ("+cmd|' /C calc'!A0", TS, 0.5, 230.0),
            ('=HYPERLINK("http://x","y")', TS, 0.5, 230.0),
            ("@SUM(1+1)", TS, 0.5, 230.0),
        ),
    ),
    Kind(
        "unicode_ids",
        "unicode.csv",
        "loaded",
        content=csv(f"Zähler-ü,0.5,230,{TS_TEXT}", f"电表-1,0.5,230,{TS_TEXT}"),
        counts=(2, 2, 0, 0, 0),
        stored=(("Zähler-ü", TS, 0.5, 230.0), ("电表-1", TS, 0.5, 230.0)),
    ),
    Kind(
        "crlf_and_bom",
        "crlf.csv",
        "loaded",
        content=b"\xef\xbb\xbf" + csv(GOOD, eol="\r\n"),
        counts=(1, 1, 0, 0, 0),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "extra_unknown_columns",
        "extra.csv",
        "loaded",
        content=csv(f"1.2.3,{GOOD},hello", header=f"firmware,{METER_HEADER},note"),
        counts=(1, 1, 0, 0, 0),
        stored=(GOOD_STORED,),
        check=_extra_columns_are_recorded,
    ),
    Kind(
        "snake_case_headers",
        "snake.csv",
        "loaded",
        content=csv(GOOD, header="meter_id,kwh_consumed_ac,voltage,timestamp"),
        counts=(1, 1, 0, 0, 0),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "uppercase_extension",
        "LOUD.CSV",
        "loaded",
        content=csv(GOOD),
        counts=(1, 1, 0, 0, 0),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "empty_lines_in_the_middle",
        "blank.csv",
        "loaded",
        # Row numbers count the blank lines, so the operator finds row 4 at line 5.
        content=csv(GOOD, "", "", f"m-2,-1,230,{TS_TEXT}", ",,,"),
        counts=(2, 1, 1, 0, 0),
        rejects=((4, "kwhConsumedAc", "between 0 and 10000 kWh"),),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "quoted_newlines_inside_fields",
        "newline-field.csv",
        "loaded",
        content=csv(
            f'"m\n1",0.5,230,{TS_TEXT},x',
            f'm-ok,0.5,230,{TS_TEXT},"two\r\nlines"',
            f"m-3,-1,230,{TS_TEXT},y",
            header=METER_HEADER + ",note",
        ),
        counts=(3, 1, 2, 0, 0),
        rejects=(
            (1, "meterId", "control characters"),
            (3, "kwhConsumedAc", "between 0 and 10000 kWh"),
        ),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "row_with_too_few_fields",
        "short-row.csv",
        "loaded",
        content=csv("m-1,0.5", GOOD),
        counts=(2, 1, 1, 0, 0),
        rejects=((1, "voltage", "is missing"), (1, "timestamp", "is missing")),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "duplicate_and_conflicting_rows_in_one_file",
        "repeats.csv",
        "loaded",
        content=csv(GOOD, GOOD, f"m-ok,0.9,230,{TS_TEXT}", f"m-2,0.5,230,{TS_TEXT}"),
        counts=(4, 2, 0, 1, 1),
        rejects=((3, None, "same key as row 1 of this file"),),
        stored=(("m-2", TS, 0.5, 230.0), GOOD_STORED),
    ),
    Kind(
        "very_large_and_tiny_numbers",
        "extremes.csv",
        "loaded",
        content=csv(
            f"m-big,1e308,230,{TS_TEXT}",
            f"m-bigv,0.5,1e308,{TS_TEXT}",
            f"m-tiny,5e-324,5e-324,{TS_TEXT}",
        ),
        counts=(3, 1, 2, 0, 0),
        rejects=(
            (1, "kwhConsumedAc", "between 0 and 10000 kWh"),
            (2, "voltage", "between 0 and 2000 V"),
        ),
        stored=(("m-tiny", TS, 5e-324, 5e-324),),
    ),
    Kind(
        "vehicle_values_out_of_range",
        "vehicle.csv",
        "loaded",
        stream=VEHICLE,
        content=csv(
            f"v-1,101,1.0,25,{TS_TEXT}",
            f"v-2,50,1.0,-60,{TS_TEXT}",
            f"v-3,50,1.0,25,{TS_TEXT}",
            header=VEHICLE_HEADER,
        ),
        counts=(3, 1, 2, 0, 0),
        rejects=((1, "soc", "between 0 and 100 %"), (2, "batteryTemp", "between -50 and 120")),
        stored=(("v-3", TS, 50.0, 1.0, 25.0),),
    ),
    Kind(
        "correlation_with_self_duplicate_pairs",
        "pairs.csv",
        "loaded",
        stream=CORRELATION,
        content=csv("m-1,v-1", "m-1,v-1", "x-1,x-1", header=CORRELATION_HEADER),
        counts=(3, 2, 0, 1, 0),
        stored=(("m-1", "v-1"), ("x-1", "x-1")),
    ),
    # ---- the file system --------------------------------------------------------------------
    Kind(
        "symlink_to_a_file_outside_landing",
        "evil.csv",
        "ignored",
        make=_symlink_to_outside_file,
    ),
    Kind(
        "symlink_to_a_folder_outside_landing",
        "gw-link",
        "ignored",
        make=_symlink_to_outside_folder,
    ),
    Kind(
        "name_with_a_newline",
        "bad\nname.csv",
        "loaded",
        content=csv(GOOD),
        counts=(1, 1, 0, 0, 0),
        stored=(GOOD_STORED,),
        check=_manifest_path_keeps_the_newline,
    ),
    Kind(
        "name_with_dot_dot_inside",
        "a..b..csv",
        "loaded",
        content=csv(GOOD),
        counts=(1, 1, 0, 0, 0),
        stored=(GOOD_STORED,),
    ),
    Kind(
        "name_starting_with_dot_dot_is_hidden",
        "..evil.csv",
        "ignored",
        content=csv(GOOD),
    ),
    Kind(
        "folder_named_like_a_data_file",
        "x.csv",
        "ignored",
        make=_folder_named_like_csv,
    ),
    Kind(
        "fifo_named_like_a_data_file",
        "x.csv",
        "ignored",
        make=_fifo_named_csv,
    ),
    Kind(
        "file_grows_after_listing",
        "growing.csv",
        "loaded",
        content=csv(GOOD),
        race="append_after_listing",
        check=_rows_match_the_archived_bytes,
    ),
    Kind(
        "file_grows_while_being_read",
        "growing.csv",
        "loaded",
        content=csv(GOOD),
        race="append_after_hashing",
        check=_rows_match_the_archived_bytes,
    ),
    Kind(
        "file_deleted_between_listing_and_reading",
        "deleted.csv",
        "vanished",
        content=csv(GOOD),
        race="delete_after_listing",
    ),
]


# --------------------------------------------------------------------------------------------
# what the run must leave untouched: the canary outside landing
# --------------------------------------------------------------------------------------------


def _atime_records_reads(folder: Path) -> bool:
    """relatime updates atime on a read when it is older than a day; noatime never does."""
    probe = folder / ".atime-probe"
    probe.write_bytes(b"probe")
    old = time.time() - 3 * 86_400
    os.utime(probe, (old, old))
    probe.read_bytes()
    recorded = probe.stat().st_atime > old + 1
    probe.unlink()
    return recorded


@dataclass(frozen=True)
class Snapshot:
    entries: dict[str, tuple[int, int, int, str]]  # path -> (mode, mtime_ns, atime_ns, sha256)
    check_atime: bool


def _snapshot_outside(outside: Path, check_atime: bool) -> Snapshot:
    """Hash everything, then set old times (a later read would move atime)."""
    paths = [outside, *sorted(outside.rglob("*"))]
    hashes = {p: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "" for p in paths}
    old = time.time() - 4 * 86_400
    for path in paths:
        os.utime(path, (old + 86_400, old), follow_symlinks=False)
    entries = {}
    for path in paths:
        info = path.lstat()
        entries[str(path)] = (info.st_mode, info.st_mtime_ns, info.st_atime_ns, hashes[path])
    return Snapshot(entries, check_atime)


def _assert_outside_untouched(outside: Path, before: Snapshot) -> None:
    # Stat first: reading the files to hash them would move their atime.
    for name, (mode, mtime_ns, atime_ns, _) in before.entries.items():
        info = Path(name).lstat()
        assert (info.st_mode, info.st_mtime_ns) == (mode, mtime_ns), f"{name} was changed"
        if before.check_atime:
            assert info.st_atime_ns == atime_ns, f"{name} was read by the loader"
    for name, (*_, sha) in before.entries.items():
        if sha:
            assert hashlib.sha256(Path(name).read_bytes()).hexdigest() == sha
    now = {str(p) for p in [outside, *outside.rglob("*")]}
    assert now == set(before.entries), "entries appeared or vanished outside landing"


def _make_outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "gw").mkdir(parents=True)
    (outside / "canary.csv").write_bytes(csv("canary,0.5,230,2026-02-11T10:30:00Z"))
    (outside / "gw" / "also-outside.csv").write_bytes(csv("canary-2,0.5,230,2026-02-11T10:30:00Z"))
    return outside


# --------------------------------------------------------------------------------------------
# running a kind
# --------------------------------------------------------------------------------------------


def _peak_rss_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match, status
    return int(match.group(1)) / 1024


def _current_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match, status
    return int(match.group(1)) / 1024


@contextmanager
def _fifo_watch(path: Path) -> Iterator[list[bool]]:
    """Notices (and unblocks) any reader that opens the FIFO, so the test never hangs."""
    opened: list[bool] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.02):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                continue  # ENXIO: nobody has it open for reading
            opened.append(True)
            os.close(fd)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield opened
    finally:
        stop.set()
        thread.join()


def _install_race(monkeypatch: pytest.MonkeyPatch, race: str, target: Path) -> None:
    real_find = ingest_stream_module.find_waiting_files
    real_sha = ingest_chunks.sha256_of

    fired: list[bool] = []

    def append() -> None:
        if fired:
            return  # once: a loader that defers the changed file finds it settled next time
        fired.append(True)
        with target.open("a", encoding="utf-8") as handle:
            handle.write(LATE_ROW)

    if race in ("append_after_listing", "delete_after_listing"):

        def find(*args: Any, **kwargs: Any) -> Any:
            files = real_find(*args, **kwargs)
            assert target in [f.path for f in files]
            if race == "delete_after_listing":
                target.unlink(missing_ok=True)
            else:
                append()
            return files

        monkeypatch.setattr(ingest_stream_module, "find_waiting_files", find)
    elif race == "append_after_hashing":
        # A file of a batch is hashed as its bytes are read; a file alone, as a stream.
        real_content = ingest_chunks.read_content

        def sha256_of(path: Path) -> str:
            digest = real_sha(path)
            if path == target:
                append()
            return digest

        def read_content(path: Path) -> tuple[bytes, str]:
            content = real_content(path)
            if path == target:
                append()
            return content

        monkeypatch.setattr(ingest_chunks, "sha256_of", sha256_of)
        monkeypatch.setattr(ingest_chunks, "read_content", read_content)
    else:
        raise AssertionError(race)


def _manifest(db: Any) -> list[dict[str, Any]]:
    with db.cursor() as cur:
        cur.execute("SELECT * FROM ingested_files ORDER BY file_id")
        rows = cur.fetch_arrow_table().to_pylist()
    db.rollback()
    return rows


def _rejected_rows(db: Any, file_id: int) -> list[tuple]:
    return query(
        db,
        "SELECT row_number, column_name, kind, rule, raw_values::text FROM rejected_rows"
        " WHERE file_id = $1 ORDER BY row_number, rejected_id",
        (file_id,),
    )


def _write_sibling(landing: Path, stream: Stream) -> Path:
    header, row = SIBLINGS[stream.name]
    path = landing / stream.name / SIBLING_NAME
    path.write_bytes(csv(row, header=header))
    return path


def _assert_sibling_loaded(db: Any, landing: Path, stream: Stream, rows: list[dict]) -> None:
    [sibling] = [r for r in rows if r["path"] == f"{stream.name}/{SIBLING_NAME}"]
    assert (sibling["status"], sibling["rows_read"], sibling["rows_loaded"]) == ("loaded", 1, 1)
    assert len(_history(db, stream, sibling["file_id"])) == 1
    assert not (landing / stream.name / SIBLING_NAME).exists()


def _archived(landing: Path, stream: str, relative: str) -> Path:
    found = [
        day / relative
        for day in (landing / "_archive" / stream).iterdir()
        if (day / relative).is_file()
    ]
    assert len(found) == 1, found
    return found[0]


def _assert_inside(path: Path, root: Path) -> None:
    assert path.resolve().is_relative_to(root.resolve()), path


def _assert_quarantined(kind: Kind, landing: Path, row: dict, original: bytes | None) -> Path:
    stream = kind.stream.name
    moved = landing / "_quarantine" / stream / kind.file
    _assert_inside(moved, landing)
    assert moved.is_file(), f"{kind.file} is not in landing/_quarantine/{stream}/"
    if original is not None:
        assert moved.read_bytes() == original, "the quarantined file must keep its bytes"
    report = json.loads(moved.with_name(moved.name + ".error.json").read_text(encoding="utf-8"))
    assert report["file"] == f"{stream}/{kind.file}"
    assert report["error"] == row["error"]
    reason = report["error"].lower()
    for word in kind.error:
        assert word.lower() in reason, f"{word!r} not in quarantine reason {report['error']!r}"
    assert row["status"] == "quarantined"
    assert row["rows_read"] == row["rows_loaded"] == row["rows_rejected"] == 0
    return moved


def _assert_loaded(kind: Kind, db: Any, landing: Path, row: dict, original: bytes | None) -> Path:
    moved = _archived(landing, kind.stream.name, kind.file)
    _assert_inside(moved, landing)
    if original is not None and kind.race is None:
        assert moved.read_bytes() == original
    assert row["status"] == "loaded", row["error"]
    counts = (
        row["rows_read"],
        row["rows_loaded"],
        row["rows_rejected"],
        row["rows_duplicate"],
        row["rows_conflicting"],
    )
    if kind.counts is not None:
        assert counts == kind.counts
    if kind.stored is not None:
        assert sorted(_history(db, kind.stream, row["file_id"])) == sorted(kind.stored)
    rejected = _rejected_rows(db, row["file_id"])
    got = sorted((r[0], r[1]) for r in rejected)
    assert got == sorted((r[0], r[1]) for r in kind.rejects), rejected
    for row_number, column, words in kind.rejects:
        [rule] = [r[3] for r in rejected if (r[0], r[1]) == (row_number, column)]
        # "a|b": either wording names the broken rule.
        assert any(w.lower() in rule.lower() for w in words.split("|")), (
            f"{words!r} not in rule {rule!r}"
        )
    for _, column, kind_of_reject, _, raw in rejected:
        assert kind_of_reject == ("invalid" if column else "conflicting")
        assert isinstance(json.loads(raw), dict)
    return moved


def _run_kind(
    kind: Kind,
    db: Any,
    settings: Settings,
    landing: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = kind.stream
    stream_dir = landing / stream.name
    outside = _make_outside(tmp_path)
    target = stream_dir / kind.file
    original: bytes | None = None
    if kind.make is not None:
        kind.make(stream_dir, outside)
    else:
        assert kind.content is not None
        original = kind.content() if callable(kind.content) else kind.content
        target.write_bytes(original)
    _write_sibling(landing, stream)
    before = _snapshot_outside(outside, _atime_records_reads(tmp_path))
    link_target = os.readlink(target) if target.is_symlink() else None
    if kind.race is not None:
        _install_race(monkeypatch, kind.race, target)

    measure = kind.max_memory_mb is not None and _peak_rss_reset()
    rss_before = _current_rss_mb()
    is_fifo = stat.S_ISFIFO(target.lstat().st_mode)
    tmp_entries = sorted(tmp_path.iterdir())
    with _fifo_watch(target) if is_fifo else _no_watch() as opened:
        outcomes = ingest_stream(db, stream, settings, run_id=RUN_ID)  # must not raise
    memory_mb = _peak_rss_mb() - rss_before if measure else None
    assert not opened, "the loader opened a FIFO"

    rows = _manifest(db)
    relative = f"{stream.name}/{kind.file}"
    if kind.race and kind.race.startswith("append") and target.exists():
        # The loader noticed the change and left the file for a later run: that run loads it.
        assert relative not in {r["path"] for r in rows}
        outcomes += ingest_stream(db, stream, settings, run_id=RUN_ID)
        rows = _manifest(db)
    _assert_sibling_loaded(db, landing, stream, rows)
    assert {o.manifest.path for o in outcomes} == {r["path"] for r in rows}
    for r in rows:
        total = r["rows_loaded"] + r["rows_rejected"] + r["rows_duplicate"]
        assert r["rows_read"] == total + r["rows_conflicting"], r
    assert reconcile_run(db, stream, RUN_ID).files_not_reconciled == []
    mine = [r for r in rows if r["path"] == relative]

    if kind.outcome in ("ignored", "vanished"):
        assert mine == [] and len(rows) == 1
        assert not (landing / "_quarantine").exists()
        assert not any(p.name == kind.file for p in (landing / "_archive").rglob("*"))
        if kind.outcome == "ignored":
            assert target.is_symlink() or target.exists(), "an ignored entry must stay"
            if link_target is not None:
                assert os.readlink(target) == link_target
            if original is not None:
                assert target.read_bytes() == original
        else:
            assert not target.exists()
    else:
        [row] = mine
        assert row["sha256"] and row["size_bytes"] >= 0
        outcome = kind.outcome
        if outcome == "bounded":
            outcome = row["status"]
            assert outcome in ("loaded", "quarantined"), row
        if outcome == "quarantined":
            moved = _assert_quarantined(kind, landing, row, original)
            assert _history(db, stream, row["file_id"]) == []
        else:
            moved = _assert_loaded(kind, db, landing, row, original)
        # The manifest describes the bytes that were handled, which the archive keeps.
        handled = moved.read_bytes()
        assert (row["sha256"], row["size_bytes"]) == (
            hashlib.sha256(handled).hexdigest(),
            len(handled),
        ), "the manifest's sha256 and size_bytes must describe the handled (archived) bytes"
        assert not target.exists()
        if kind.check is not None:
            kind.check(Seen(db, landing, outside, row, moved))

    if memory_mb is not None:
        assert kind.max_memory_mb is not None
        print(f"{kind.name}: peak resident memory grew by {memory_mb:.0f} MB")
        assert memory_mb < kind.max_memory_mb, (
            f"{kind.name}: peak resident memory grew by {memory_mb:.0f} MB "
            f"(bound {kind.max_memory_mb:.0f} MB)"
        )

    _assert_outside_untouched(outside, before)
    assert sorted(tmp_path.iterdir()) == tmp_entries, "the run wrote next to the landing root"


@contextmanager
def _no_watch() -> Iterator[list[bool]]:
    yield []


def test_the_corpus_has_at_least_40_kinds() -> None:
    names = [k.name for k in KINDS]
    assert len(names) == len(set(names))
    assert len(KINDS) + 1 >= 40  # + the unprivileged-read test below


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_hostile_file(
    kind: Kind,
    db: Any,
    settings: Settings,
    landing: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _run_kind(kind, db, settings, landing, tmp_path, monkeypatch)


# --------------------------------------------------------------------------------------------
# a file the loader may not read
# --------------------------------------------------------------------------------------------


@contextmanager
def _unprivileged() -> Iterator[None]:
    """As root, drop the effective uid to nobody (root reads any file whatever its mode); the
    real uid stays root, so the privileges come back afterwards."""
    if os.geteuid() != 0:
        yield
        return
    nobody = pwd.getpwnam("nobody").pw_uid
    os.seteuid(nobody)
    try:
        yield
    finally:
        os.seteuid(0)


def test_file_without_read_permission(db: Any, settings: Settings, tmp_path: Path) -> None:
    """A gateway file the loader's user may not read (mode 000). Expected: the run goes on,
    the sibling file loads, and the unreadable file is quarantined with a reason naming the
    permission problem, or left where it is for a later run; never lost."""
    # Warm up as root first: the stdlib lives under /root, which nobody cannot import from.
    warm = settings.landing_dir
    (warm / "meter" / "warm.csv").write_bytes(csv(GOOD, f"m-2,-1,230,{TS_TEXT}"))
    (warm / "meter" / "warm.parquet").write_bytes(b"PAR1 junk")
    ingest_stream(db, METER, settings, run_id="warm-up")

    base = Path(tempfile.mkdtemp(prefix="hostile-perm-"))
    try:
        os.chmod(base, 0o755)
        landing = base / "landing"
        for stream in ("meter", "vehicle", "correlation"):
            (landing / stream).mkdir(parents=True)
        locked = landing / "meter" / "locked.csv"
        content = csv(f"m-locked,0.5,230,{TS_TEXT}")
        locked.write_bytes(content)
        _write_sibling(landing, METER)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for path in [landing, *landing.rglob("*")]:
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
        os.chmod(locked, 0)
        run_settings = dataclasses.replace(settings, landing_dir=landing)

        with _unprivileged():
            outcomes = ingest_stream(db, METER, run_settings, run_id=RUN_ID)  # must not raise

        rows = _manifest(db)
        run_rows = [r for r in rows if r["run_id"] == RUN_ID]
        assert {o.manifest.path for o in outcomes} == {r["path"] for r in run_rows}
        _assert_sibling_loaded(db, landing, METER, run_rows)
        mine = [r for r in run_rows if r["path"] == "meter/locked.csv"]
        quarantined = landing / "_quarantine" / "meter" / "locked.csv"
        if mine:
            [row] = mine
            assert row["status"] == "quarantined"
            assert "permission" in row["error"].lower()
            assert quarantined.exists()
        else:
            assert locked.exists(), "an unreadable file must not disappear"
            os.chmod(locked, 0o644)
            assert locked.read_bytes() == content
    finally:
        shutil.rmtree(base)
