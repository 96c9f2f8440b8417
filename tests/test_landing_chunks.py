"""Chunked reading of one landing file: together the chunks are what read_landing_file reads.

Every file is built in pytest's tmp_path; nothing of energy_pipelines is mocked.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.exceptions import PanicException
from polars.testing import assert_frame_equal

from energy_pipelines.contract import CORRELATION, METER, VEHICLE, Stream
from energy_pipelines.landing.discover import LandingFile, find_waiting_files
from energy_pipelines.landing.errors import FileRejected, first_line, rejecting
from energy_pipelines.landing.read import (
    ROW_NUMBER,
    RawFile,
    _regrouped,
    iter_landing_chunks,
    read_landing_file,
)
from tests.helpers import meter_table

METER_HEADER = "meterId,kwhConsumedAc,voltage,timestamp"
DATA_DIR = Path(__file__).parent / "data"


def _landing(root: Path, stream: Stream, name: str, data: bytes | str) -> LandingFile:
    path = root / stream.name / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    [file] = find_waiting_files(root, stream, settle_seconds=0)
    return file


def _parquet(root: Path, stream: Stream, table: pa.Table, row_group_size: int) -> LandingFile:
    path = root / stream.name / "readings.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    [file] = find_waiting_files(root, stream, settle_seconds=0)
    return file


def _same_as_whole(file: LandingFile, stream: Stream, chunk_rows: int) -> list[RawFile]:
    """Chunks of at most chunk_rows rows that together equal read_landing_file's result."""
    whole = read_landing_file(file, stream)
    chunks = list(iter_landing_chunks(file, stream, chunk_rows=chunk_rows))
    assert chunks
    assert all(0 < c.frame.height <= chunk_rows for c in chunks) or (
        len(chunks) == 1 and whole.frame.height == 0
    )
    assert_frame_equal(pl.concat([c.frame for c in chunks]), whole.frame)
    for chunk in chunks:
        assert chunk.source_names == whole.source_names
        assert chunk.extra_columns == whole.extra_columns
    return chunks


def _meter_csv(rows: int) -> str:
    """A meter CSV with extra columns, blank lines (also in runs and at the end), a quoted
    line break and CRLF line ends."""
    lines = [f"firmware,{METER_HEADER},note"]
    for n in range(1, rows + 1):
        lines.append(f"v1,m-{n},{n}.5,230,2026-02-11T10:{n % 60:02d}:00Z,n{n}")
        if n % 5 == 0:
            lines.append("")
        if n % 11 == 0:
            lines += ["", ""]
        if n == 7:
            lines.append('v2,m-q,1,2,3,"two\r\nlines"')
    return "\r\n".join(lines) + "\r\n\r\n"


def _compress(data: str, name: str) -> bytes | str:
    return gzip.compress(data.encode()) if name.endswith(".gz") else data


def test_reader_batches_are_regrouped_into_full_chunks() -> None:
    # Readers may hand over batches larger or smaller than asked for.
    frames = [pl.DataFrame({ROW_NUMBER: range(a, b)}) for a, b in [(1, 6), (6, 7), (7, 15)]]
    empty = frames[0].clear()

    chunks = list(_regrouped(iter(frames), 3))

    assert [c[ROW_NUMBER].to_list() for c in chunks] == [
        [1, 2, 3],
        [4, 5, 6],
        [7, 8, 9],
        [10, 11, 12],
        [13, 14],
    ]
    [only] = _regrouped(iter([empty]), 3)
    assert only.height == 0
    [whole] = _regrouped(iter(frames), None)
    assert whole[ROW_NUMBER].to_list() == list(range(1, 15))


def test_a_reader_failure_becomes_the_rejection_and_interrupts_pass() -> None:
    def one_then(failure: BaseException) -> Iterator[int]:
        yield 1
        raise failure

    def unreadable(exc: BaseException) -> FileRejected:
        return FileRejected(f"unreadable: {first_line(exc)}")

    items = rejecting(one_then(PanicException("boom")), unreadable)
    assert next(items) == 1
    with pytest.raises(FileRejected, match=r"^unreadable: boom$"):
        next(items)
    with pytest.raises(FileRejected, match=r"^unreadable: bad bytes$"):
        list(rejecting(one_then(ValueError("bad bytes")), unreadable))
    with pytest.raises(FileRejected, match=r"^as it was$"):
        list(rejecting(one_then(FileRejected("as it was")), unreadable))
    with pytest.raises(KeyboardInterrupt):
        list(rejecting(one_then(KeyboardInterrupt()), unreadable))


# --------------------------------------------------------------------------------------------
# CSV and CSV.gz
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.csv", "a.csv.gz"])
@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 1_000])
def test_csv_chunks_equal_the_whole_file(tmp_path: Path, name: str, chunk_rows: int) -> None:
    file = _landing(tmp_path, METER, name, _compress(_meter_csv(40), name))

    chunks = _same_as_whole(file, METER, chunk_rows)

    frame = pl.concat([c.frame for c in chunks])
    assert frame.height == 41
    # Blank lines are no rows but still count: the numbers have gaps.
    assert frame[ROW_NUMBER].max() > frame.height
    assert frame.filter(pl.col("meter_id") == "m-6")[ROW_NUMBER].item() == 7
    assert frame.filter(pl.col("meter_id") == "m-q")[ROW_NUMBER].item() == 9
    assert chunks[0].extra_columns == ["firmware", "note"]
    assert len(chunks) == -(-41 // chunk_rows)


def test_csv_snake_case_headers_and_bom(tmp_path: Path) -> None:
    rows = "".join(f"v-{n},{n},2.5,20,2026-02-11T10:30:00Z\n" for n in range(10))
    header = "vehicle_id,soc,kwh_delivered_dc,battery_temp,timestamp"
    data = b"\xef\xbb\xbf" + f"{header}\n{rows}".encode()
    file = _landing(tmp_path, VEHICLE, "snake.csv", data)

    chunks = _same_as_whole(file, VEHICLE, 3)

    assert len(chunks) == 4
    assert chunks[0].source_names["vehicle_id"] == "vehicle_id"
    assert chunks[-1].frame.rows() == [(10, "v-9", "9", "2.5", "20", "2026-02-11T10:30:00Z")]


@pytest.mark.parametrize("name", ["small.csv", "small.csv.gz"])
def test_file_smaller_than_a_chunk_is_one_chunk(tmp_path: Path, name: str) -> None:
    file = _landing(tmp_path, METER, name, _compress(_meter_csv(4), name))
    [chunk] = _same_as_whole(file, METER, 1_000_000)
    assert chunk.frame.height == 4


@pytest.mark.parametrize("name", ["h.csv", "h.csv.gz"])
def test_header_only_file_is_one_empty_chunk(tmp_path: Path, name: str) -> None:
    file = _landing(tmp_path, METER, name, _compress(f"{METER_HEADER}\n\n", name))
    [chunk] = _same_as_whole(file, METER, 3)
    assert chunk.frame.columns == [ROW_NUMBER, *METER.columns]


def test_csv_name_with_glob_characters_is_that_file(tmp_path: Path) -> None:
    _landing(tmp_path, METER, "x1.csv", f"{METER_HEADER}\nother,1,2,3\n")
    (tmp_path / METER.name / "x[1].csv").write_text(f"{METER_HEADER}\nthis,1,2,3\n")
    [file] = [f for f in find_waiting_files(tmp_path, METER, 0) if f.path.name == "x[1].csv"]
    [chunk] = iter_landing_chunks(file, METER, chunk_rows=3)
    assert chunk.frame["meter_id"].to_list() == ["this"]


def _rejections(file: LandingFile, stream: Stream, chunk_rows: int) -> tuple[str, str]:
    """read_landing_file's and the iterator's rejection reasons for one file."""
    with pytest.raises(FileRejected) as whole:
        read_landing_file(file, stream)
    chunks = iter_landing_chunks(file, stream, chunk_rows=chunk_rows)
    with pytest.raises(FileRejected) as chunked:
        list(chunks)
    return whole.value.reason, chunked.value.reason


@pytest.mark.parametrize("name", ["late.csv", "late.csv.gz"])
@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        ("Z\u00e4hler,1,2,3".encode("latin-1"), "not valid UTF-8"),
        (b"m,1,2,3,surprise", "not readable as comma-separated CSV"),
        (b'm,1,2,"3', "not readable as comma-separated CSV"),
    ],
    ids=["latin1", "too-many-fields", "open-quote"],
)
def test_csv_problem_in_a_later_part_is_raised_while_iterating(
    tmp_path: Path, name: str, bad_row: bytes, expected: str
) -> None:
    body = f"{METER_HEADER}\n".encode() + b"m,1,2,3\n" * 50 + bad_row + b"\n"
    file = _landing(tmp_path, METER, name, gzip.compress(body) if name.endswith(".gz") else body)

    whole, chunked = _rejections(file, METER, 3)

    assert chunked == whole
    assert expected in chunked


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("missing.csv", "meterId,voltage,timestamp\nm,1,2\n"),
        ("twice.csv", f"meterId,{METER_HEADER}\nm,m,1,2,3\n"),
        ("semicolon.csv", "meterId;kwhConsumedAc;voltage;timestamp\nm;1;2;3\n"),
        ("empty.csv", ""),
        ("utf16.csv", f"{METER_HEADER}\nm,1,2,3\n".encode("utf-16")),
        ("empty.csv.gz", gzip.compress(b"")),
        ("truncated.csv.gz", gzip.compress(f"{METER_HEADER}\n{'m,1,2,3' * 2000}".encode())[:99]),
    ],
    ids=["missing", "twice", "semicolon", "empty", "utf16", "empty-gz", "truncated-gz"],
)
def test_header_problems_reject_before_the_first_chunk(
    tmp_path: Path, name: str, data: str | bytes
) -> None:
    file = _landing(tmp_path, METER, name, data)
    with pytest.raises(FileRejected) as whole:
        read_landing_file(file, METER)
    chunks = iter_landing_chunks(file, METER, chunk_rows=3)
    # Raised by the first next(), before any chunk.
    with pytest.raises(FileRejected) as chunked:
        next(chunks)
    assert chunked.value.reason == whole.value.reason


def test_chunk_rows_must_be_positive(tmp_path: Path) -> None:
    file = _landing(tmp_path, METER, "a.csv", _meter_csv(3))
    with pytest.raises(ValueError, match="chunk_rows"):
        next(iter_landing_chunks(file, METER, chunk_rows=0))


def test_stopping_early_is_clean(tmp_path: Path) -> None:
    file = _landing(tmp_path, METER, "a.csv", _meter_csv(40))
    chunks = iter_landing_chunks(file, METER, chunk_rows=3)
    assert next(chunks).frame[ROW_NUMBER].to_list() == [1, 2, 3]
    chunks.close()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------


def _meter_rows(rows: int, tz: str = "UTC") -> pa.Table:
    start = datetime(2026, 2, 11, tzinfo=UTC)
    return pa.table(
        {
            "meterId": pa.array([f"m-{n % 13}" for n in range(rows)]).dictionary_encode(),
            "kwh_consumed_ac": pa.array([n / 4 for n in range(rows)]),
            "gateway": pa.array([f"gw-{n}" for n in range(rows)]),
            "voltage": pa.array([230 + n % 7 for n in range(rows)], pa.int32()),
            "payload": pa.array([{"n": n} for n in range(rows)]),
            "timestamp": pa.array(
                [start + timedelta(minutes=n) for n in range(rows)], pa.timestamp("us", tz=tz)
            ),
        }
    )


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 10, 45, 1_000])
def test_parquet_chunks_equal_the_whole_file(tmp_path: Path, chunk_rows: int) -> None:
    file = _parquet(tmp_path, METER, _meter_rows(45, tz="+02:00"), row_group_size=10)
    assert pq.ParquetFile(file.path).metadata.num_row_groups == 5

    chunks = _same_as_whole(file, METER, chunk_rows)

    assert len(chunks) == -(-45 // chunk_rows)
    assert chunks[0].source_names["kwh_consumed_ac"] == "kwh_consumed_ac"
    assert chunks[0].extra_columns == ["gateway", "payload"]
    frame = pl.concat([c.frame for c in chunks])
    assert frame[ROW_NUMBER].to_list() == list(range(1, 46))
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    assert frame.schema["meter_id"] == pl.String


def test_parquet_empty_file_is_one_empty_chunk(tmp_path: Path) -> None:
    file = _parquet(tmp_path, METER, meter_table().slice(0, 0), row_group_size=10)
    [chunk] = _same_as_whole(file, METER, 3)
    assert chunk.frame.height == 0
    assert isinstance(chunk.frame.schema["ts"], pl.Datetime)


def test_parquet_invalid_utf8_in_second_row_group_rejects_while_iterating(
    tmp_path: Path,
) -> None:
    good = pa.table({"meterId": ["m-1", "m-2", "m-3"], "vehicleId": ["v-1", "v-2", "v-3"]})
    bad_ids = pa.array([b"m-4", b"Z\xe4hler", b"m-6"], pa.binary()).view(pa.string())
    bad = pa.table({"meterId": bad_ids, "vehicleId": ["v-4", "v-5", "v-6"]})
    path = tmp_path / "correlation" / "bad.parquet"
    path.parent.mkdir()
    with pq.ParquetWriter(path, good.schema) as writer:
        writer.write_table(good)
        writer.write_table(bad)
    [file] = find_waiting_files(tmp_path, CORRELATION, settle_seconds=0)
    assert pq.ParquetFile(path).metadata.num_row_groups == 2

    chunks = iter_landing_chunks(file, CORRELATION, chunk_rows=2)
    first = next(chunks)
    assert first.frame.rows() == [(1, "m-1", "v-1"), (2, "m-2", "v-2")]
    with pytest.raises(FileRejected) as caught:
        list(chunks)

    with pytest.raises(FileRejected) as whole:
        read_landing_file(file, CORRELATION)
    # The prefix is read_landing_file's; pyarrow's detail after it counts positions within the
    # batch that failed, not within the whole file.
    prefix = "a text column is not valid UTF-8: "
    assert whole.value.reason.startswith(prefix)
    assert caught.value.reason.startswith(prefix)
    assert "Invalid UTF8" in caught.value.reason


def test_parquet_extra_column_is_never_read(tmp_path: Path) -> None:
    # Its values are neither checked nor stored: invalid UTF-8 there rejects nothing.
    bad_text = pa.array([b"Z\xe4hler", b"ok"], pa.binary()).view(pa.string())
    file = _parquet(tmp_path, METER, meter_table().append_column("note", bad_text), 10)

    [chunk] = _same_as_whole(file, METER, 3)

    assert chunk.extra_columns == ["note"]
    assert chunk.frame.height == 2


def test_parquet_column_named_twice_is_rejected_alike(tmp_path: Path) -> None:
    table = meter_table()
    doubled = pa.Table.from_arrays(
        [table["meterId"], *table.columns], names=["meterId", *table.column_names]
    )
    file = _parquet(tmp_path, METER, doubled, row_group_size=10)
    whole, chunked = _rejections(file, METER, 3)
    assert chunked == whole == "column(s) meterId appear more than once in the header"


def test_parquet_with_a_corrupt_byte_is_rejected_alike(tmp_path: Path) -> None:
    (tmp_path / "meter").mkdir()
    shutil.copy(DATA_DIR / "meter_one_corrupt_byte.parquet", tmp_path / "meter" / "c.parquet")
    [file] = find_waiting_files(tmp_path, METER, settle_seconds=0)
    whole, chunked = _rejections(file, METER, 3)
    assert chunked == whole
    assert "Parquet" in chunked


@pytest.mark.parametrize(
    "table",
    [
        meter_table(timestamp=pa.array([1, 2], pa.int64())),
        meter_table().drop_columns(["voltage"]),
        pa.table({"meterId": ["a"], "meter_id": ["b"], "kwhConsumedAc": [1.0]}),
    ],
    ids=["ts-int", "missing-voltage", "camel-and-snake"],
)
def test_parquet_schema_problems_reject_before_the_first_chunk(
    tmp_path: Path, table: pa.Table
) -> None:
    file = _parquet(tmp_path, METER, table, row_group_size=10)
    with pytest.raises(FileRejected) as whole:
        read_landing_file(file, METER)
    chunks = iter_landing_chunks(file, METER, chunk_rows=3)
    with pytest.raises(FileRejected) as chunked:
        next(chunks)
    assert chunked.value.reason == whole.value.reason


def test_truncated_parquet_is_rejected_alike(tmp_path: Path) -> None:
    file = _parquet(tmp_path, METER, meter_table(), row_group_size=10)
    data = file.path.read_bytes()
    file = _landing(tmp_path, METER, "readings.parquet", data[: len(data) // 2])
    with pytest.raises(FileRejected) as whole:
        read_landing_file(file, METER)
    chunks = iter_landing_chunks(file, METER, chunk_rows=3)
    with pytest.raises(FileRejected) as chunked:
        next(chunks)
    assert chunked.value.reason == whole.value.reason


def test_large_parquet_chunks_are_bounded(tmp_path: Path) -> None:
    rows = 300_000
    start = datetime(2026, 2, 11, tzinfo=UTC)
    table = pa.table(
        {
            "meterId": pa.array([f"m-{n % 997}" for n in range(rows)]),
            "kwhConsumedAc": pa.array(range(rows), pa.float64()),
            "voltage": pa.array([230.0] * rows),
            "timestamp": pa.array([start] * rows, pa.timestamp("us", tz="UTC")),
        }
    )
    # Row groups of 70,000 rows: chunk boundaries fall inside them.
    file = _parquet(tmp_path, METER, table, row_group_size=70_000)

    chunks = _same_as_whole(file, METER, 100_000)

    assert max(c.frame.height for c in chunks) <= 100_000
    assert [c.frame.height for c in chunks] == [100_000, 100_000, 100_000]
    assert [c.frame[ROW_NUMBER][0] for c in chunks] == [1, 100_001, 200_001]
