"""Landing stage: discovery of waiting files, reading them against the contract, archive/quarantine.

Every file is built in pytest's tmp_path; nothing of energy_pipelines is mocked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from energy_pipelines.contract import CORRELATION, METER, STREAMS, VEHICLE, Stream
from energy_pipelines.landing.archive import (
    ARCHIVE_DIR,
    QUARANTINE_DIR,
    archive_file,
    quarantine_file,
)
from energy_pipelines.landing.discover import (
    LandingFile,
    find_waiting_files,
    is_data_file_name,
    is_ignored_name,
    sha256_of,
)
from energy_pipelines.landing.errors import FileRejected
from energy_pipelines.landing.read import ROW_NUMBER, RawFile, read_landing_file
from tests.helpers import meter_table

METER_HEADER = "meterId,kwhConsumedAc,voltage,timestamp"
METER_ROW = "m-1,1.5,230,2026-02-11T10:30:00Z"
TS = datetime(2026, 2, 11, 10, 30)
DATA_DIR = Path(__file__).parent / "data"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _write(root: Path, relative: str, data: bytes | str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def _write_parquet(root: Path, relative: str, table: pa.Table) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _only_file(root: Path, stream: Stream) -> LandingFile:
    files = find_waiting_files(root, stream, settle_seconds=0)
    assert len(files) == 1, files
    return files[0]


def _read(root: Path, name: str, data: bytes | str, stream: Stream = METER) -> RawFile:
    _write(root, f"{stream.name}/{name}", data)
    return read_landing_file(_only_file(root, stream), stream)


def _read_table(root: Path, table: pa.Table, stream: Stream = METER) -> RawFile:
    _write_parquet(root, f"{stream.name}/readings.parquet", table)
    return read_landing_file(_only_file(root, stream), stream)


def _rejected(root: Path, name: str, data: bytes | str, stream: Stream = METER) -> str:
    _write(root, f"{stream.name}/{name}", data)
    with pytest.raises(FileRejected) as caught:
        read_landing_file(_only_file(root, stream), stream)
    reason = caught.value.reason
    assert reason == str(caught.value)
    assert reason.strip(), "a rejection must say why"
    return reason


def _set_mtime(path: Path, mtime: float) -> None:
    os.utime(path, (mtime, mtime))


# --------------------------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------------------------


def test_contract_has_the_three_streams() -> None:
    assert set(STREAMS) == {"meter", "vehicle", "correlation"}
    assert METER.columns == ["meter_id", "kwh_consumed_ac", "voltage", "ts"]
    assert VEHICLE.columns == ["vehicle_id", "soc", "kwh_delivered_dc", "battery_temp", "ts"]
    assert CORRELATION.columns == ["meter_id", "vehicle_id"]


def test_finds_all_formats_in_nested_folders_in_path_order(tmp_path: Path) -> None:
    _write(tmp_path, "meter/gw-7/2026/02/b.csv", "x")
    _write(tmp_path, "meter/a.parquet", "x")
    _write(tmp_path, "meter/gw-7/c.csv.gz", "x")
    _write(tmp_path, "meter/gw-1/deep/er/z.CSV", "x")

    files = find_waiting_files(tmp_path, METER, settle_seconds=0)

    assert [f.relative_path for f in files] == [
        "meter/a.parquet",
        "meter/gw-1/deep/er/z.CSV",
        "meter/gw-7/2026/02/b.csv",
        "meter/gw-7/c.csv.gz",
    ]
    assert [f.format for f in files] == ["parquet", "csv", "csv", "csv.gz"]
    assert all(f.stream == "meter" for f in files)
    assert files[2].path == tmp_path / "meter" / "gw-7" / "2026" / "02" / "b.csv"


def test_landing_file_records_size_and_mtime(tmp_path: Path) -> None:
    path = _write(tmp_path, "vehicle/gw/a.csv", "12345")
    _set_mtime(path, 1_700_000_000)
    [found] = find_waiting_files(tmp_path, VEHICLE, settle_seconds=0, now=1_800_000_000)
    assert found.size_bytes == 5
    assert found.modified_at == 1_700_000_000
    assert found.relative_path == "vehicle/gw/a.csv"
    assert found.stream == "vehicle"


def test_streams_are_not_mixed_and_missing_folder_is_empty(tmp_path: Path) -> None:
    _write(tmp_path, "meter/m.csv", "x")
    _write(tmp_path, "vehicle/v.csv", "x")
    assert [f.relative_path for f in find_waiting_files(tmp_path, METER, 0)] == ["meter/m.csv"]
    assert [f.relative_path for f in find_waiting_files(tmp_path, VEHICLE, 0)] == ["vehicle/v.csv"]
    assert find_waiting_files(tmp_path, CORRELATION, 0) == []
    assert find_waiting_files(tmp_path / "does-not-exist", METER, 0) == []


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.csv",
        "._mac-resource.csv",
        "_partial.csv",
        "_tmp.parquet",
        "a.csv.tmp",
        "a.parquet.part",
        "a.csv.gz.crdownload",
        "A.CSV.TMP",
        "a.csv.PART",
        "notes.txt",
        "a.json",
        "a.gz",
        "a.csv.bak",
        "a.parquet.old",
        "csv",
    ],
)
def test_ignored_and_unsupported_names_are_skipped(tmp_path: Path, name: str) -> None:
    _write(tmp_path, f"meter/{name}", "x")
    _write(tmp_path, "meter/good.csv", "x")
    assert [f.path.name for f in find_waiting_files(tmp_path, METER, 0)] == ["good.csv"]


def test_name_predicates() -> None:
    assert is_ignored_name(".x.csv")
    assert is_ignored_name("_x.csv")
    assert is_ignored_name("x.csv.tmp")
    assert is_ignored_name("x.csv.crdownload")
    assert not is_ignored_name("x.csv")
    assert not is_ignored_name("x_y.csv")
    assert is_data_file_name("X.Csv.Gz")
    assert is_data_file_name("x.parquet")
    assert not is_data_file_name("x.gz")
    assert not is_data_file_name("x.csv.tmp")


def test_hidden_and_underscore_folders_are_not_walked(tmp_path: Path) -> None:
    _write(tmp_path, "meter/_archive/old.csv", "x")
    _write(tmp_path, "meter/_quarantine/bad.csv", "x")
    _write(tmp_path, "meter/.git/objects.csv", "x")
    _write(tmp_path, "meter/gw/.cache/a.csv", "x")
    _write(tmp_path, "meter/gw/ok.csv", "x")
    assert [f.relative_path for f in find_waiting_files(tmp_path, METER, 0)] == ["meter/gw/ok.csv"]


def test_settle_time_is_respected(tmp_path: Path) -> None:
    written_at = 1_750_000_000.0
    path = _write(tmp_path, "meter/gw/a.csv", "x")
    _set_mtime(path, written_at)

    assert find_waiting_files(tmp_path, METER, settle_seconds=5, now=written_at) == []
    assert find_waiting_files(tmp_path, METER, settle_seconds=5, now=written_at + 4.9) == []
    [found] = find_waiting_files(tmp_path, METER, settle_seconds=5, now=written_at + 5.1)
    assert found.path == path

    # The writer appends again: the file is not picked until it has settled once more.
    _set_mtime(path, written_at + 60)
    assert find_waiting_files(tmp_path, METER, settle_seconds=5, now=written_at + 62) == []
    assert len(find_waiting_files(tmp_path, METER, settle_seconds=5, now=written_at + 66)) == 1


def test_settle_uses_current_time_when_now_is_omitted(tmp_path: Path) -> None:
    _write(tmp_path, "meter/fresh.csv", "x")
    assert find_waiting_files(tmp_path, METER, settle_seconds=3600) == []
    assert len(find_waiting_files(tmp_path, METER, settle_seconds=0)) == 1


def test_symlinked_file_is_skipped(tmp_path: Path) -> None:
    outside = _write(tmp_path, "outside/secret.csv", "x")
    (tmp_path / "meter").mkdir()
    (tmp_path / "meter" / "link.csv").symlink_to(outside)
    _write(tmp_path, "meter/real.csv", "x")
    assert [f.path.name for f in find_waiting_files(tmp_path, METER, 0)] == ["real.csv"]


def test_symlinked_folder_is_not_followed(tmp_path: Path) -> None:
    _write(tmp_path, "outside/gw/a.csv", "x")
    (tmp_path / "meter").mkdir()
    (tmp_path / "meter" / "linked-gw").symlink_to(tmp_path / "outside" / "gw")
    assert find_waiting_files(tmp_path, METER, 0) == []


def test_broken_symlink_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "meter").mkdir()
    (tmp_path / "meter" / "dangling.csv").symlink_to(tmp_path / "nowhere.csv")
    assert find_waiting_files(tmp_path, METER, 0) == []


def test_directory_named_like_a_data_file_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "meter" / "x.csv").mkdir(parents=True)
    (tmp_path / "meter" / "y.parquet").mkdir()
    _write(tmp_path, "meter/x.csv/inner.csv", "x")
    found = find_waiting_files(tmp_path, METER, 0)
    assert [f.relative_path for f in found] == ["meter/x.csv/inner.csv"]


def test_order_is_deterministic_and_limit_takes_the_first(tmp_path: Path) -> None:
    names = ["gw-b/2.csv", "gw-a/9.csv", "0.parquet", "gw-a/10.csv", "gw-b/1.csv.gz", "z.csv"]
    for name in names:
        _write(tmp_path, f"meter/{name}", "x")
    first = [f.relative_path for f in find_waiting_files(tmp_path, METER, 0)]
    second = [f.relative_path for f in find_waiting_files(tmp_path, METER, 0)]
    assert first == second == sorted(f"meter/{n}" for n in names)
    limited = find_waiting_files(tmp_path, METER, 0, limit=2)
    assert [f.relative_path for f in limited] == first[:2]


def test_sha256_of_matches_hashlib(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    path = _write(tmp_path, "meter/a.csv", data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# reading CSV
# --------------------------------------------------------------------------------------------


def test_plain_csv_is_read_as_text_with_row_numbers(tmp_path: Path) -> None:
    raw = _read(tmp_path, "a.csv", f"{METER_HEADER}\n{METER_ROW}\nm-2,2,231,2026-02-11T10:31:00Z\n")
    assert raw.frame.columns == [ROW_NUMBER, "meter_id", "kwh_consumed_ac", "voltage", "ts"]
    assert raw.frame.schema[ROW_NUMBER] == pl.Int64
    assert all(raw.frame.schema[c] == pl.String for c in METER.columns)
    assert raw.frame[ROW_NUMBER].to_list() == [1, 2]
    assert raw.frame.row(0) == (1, "m-1", "1.5", "230", "2026-02-11T10:30:00Z")
    assert raw.source_names == {
        "meter_id": "meterId",
        "kwh_consumed_ac": "kwhConsumedAc",
        "voltage": "voltage",
        "ts": "timestamp",
    }
    assert raw.extra_columns == []


def test_bom_is_accepted(tmp_path: Path) -> None:
    raw = _read(tmp_path, "bom.csv", b"\xef\xbb\xbf" + f"{METER_HEADER}\n{METER_ROW}\n".encode())
    assert raw.source_names["meter_id"] == "meterId"
    assert raw.frame["meter_id"].to_list() == ["m-1"]


def test_crlf_line_endings_leave_no_carriage_returns(tmp_path: Path) -> None:
    raw = _read(
        tmp_path,
        "crlf.csv",
        b"meterId,vehicleId\r\nm-1,v-1\r\nm-2,v-2\r\n",
        CORRELATION,
    )
    assert raw.frame.select("meter_id", "vehicle_id").rows() == [("m-1", "v-1"), ("m-2", "v-2")]


def test_crlf_header_only_and_header_without_newline(tmp_path: Path) -> None:
    raw = _read(tmp_path, "a.csv", b"meterId,vehicleId\r\n", CORRELATION)
    assert raw.frame.height == 0
    (tmp_path / "correlation" / "a.csv").unlink()
    raw = _read(tmp_path, "b.csv", b"meterId,vehicleId", CORRELATION)
    assert raw.frame.height == 0


def test_rfc4180_quoting_is_honoured(tmp_path: Path) -> None:
    data = 'meterId,vehicleId\n"a,b","say ""hi"""\n"line\nbreak",plain\nafter,row\n'
    raw = _read(tmp_path, "q.csv", data, CORRELATION)
    assert raw.frame.select(ROW_NUMBER, "meter_id", "vehicle_id").rows() == [
        (1, "a,b", 'say "hi"'),
        (2, "line\nbreak", "plain"),
        # Row numbers count records, not physical lines.
        (3, "after", "row"),
    ]


def test_weird_ids_are_read_verbatim(tmp_path: Path) -> None:
    ids = [
        "O'Brien; DROP TABLE x;--",
        '=HYPERLINK("x")',
        "Zähler-Ω-⚡-日本",
        "🚗",
        "  padded  ",
        "NULL",
        "NA",
        "\\N",
        "'quoted'",
    ]
    lines = ["meterId,vehicleId"]
    lines += ['"' + i.replace('"', '""') + '",v' for i in ids]
    raw = _read(tmp_path, "ids.csv", "\n".join(lines) + "\n", CORRELATION)
    assert raw.frame["meter_id"].to_list() == ids


def test_csv_gz_is_decompressed(tmp_path: Path) -> None:
    raw = _read(tmp_path, "a.csv.gz", gzip.compress(f"{METER_HEADER}\n{METER_ROW}\n".encode()))
    assert raw.frame.select("meter_id", "kwh_consumed_ac").rows() == [("m-1", "1.5")]


def test_truncated_csv_gz_is_rejected(tmp_path: Path) -> None:
    body = gzip.compress((f"{METER_HEADER}\n" + f"{METER_ROW}\n" * 2000).encode())
    _rejected(tmp_path, "a.csv.gz", body[: len(body) // 2])


def test_snake_case_headers_are_accepted(tmp_path: Path) -> None:
    raw = _read(
        tmp_path,
        "snake.csv",
        "vehicle_id,soc,kwh_delivered_dc,battery_temp,timestamp\nv-1,50,2.5,20,2026-02-11T10:30:00Z\n",
        VEHICLE,
    )
    assert raw.source_names == {
        "vehicle_id": "vehicle_id",
        "soc": "soc",
        "kwh_delivered_dc": "kwh_delivered_dc",
        "battery_temp": "battery_temp",
        "ts": "timestamp",
    }
    assert raw.frame.row(0) == (1, "v-1", "50", "2.5", "20", "2026-02-11T10:30:00Z")


def test_camel_and_snake_for_different_columns_may_mix(tmp_path: Path) -> None:
    raw = _read(tmp_path, "mix.csv", "meter_id,kwhConsumedAc,voltage,timestamp\nm,1,2,3\n")
    assert raw.source_names["meter_id"] == "meter_id"
    assert raw.source_names["kwh_consumed_ac"] == "kwhConsumedAc"


def test_columns_in_any_order(tmp_path: Path) -> None:
    raw = _read(tmp_path, "o.csv", "timestamp,voltage,meterId,kwhConsumedAc\nT,V,M,K\n")
    assert raw.frame.select(METER.columns).row(0) == ("M", "K", "V", "T")


def test_extra_columns_are_ignored_and_reported(tmp_path: Path) -> None:
    raw = _read(
        tmp_path,
        "extra.csv",
        f"firmware,{METER_HEADER},note\nv1.2,{METER_ROW},hello\n",
    )
    assert raw.extra_columns == ["firmware", "note"]
    assert raw.frame.columns == [ROW_NUMBER, *METER.columns]


def test_header_whitespace_is_tolerated_and_original_header_kept(tmp_path: Path) -> None:
    raw = _read(tmp_path, "ws.csv", " meterId , vehicleId\nm-1,v-1\n", CORRELATION)
    assert raw.source_names == {"meter_id": " meterId ", "vehicle_id": " vehicleId"}
    assert raw.extra_columns == []


def test_camel_and_snake_spelling_of_one_column_is_ambiguous(tmp_path: Path) -> None:
    reason = _rejected(
        tmp_path,
        "both.csv",
        "meterId,meter_id,kwhConsumedAc,voltage,timestamp\nm1,m2,1,2,2026-01-01T00:00:00Z\n",
    )
    assert "meterId" in reason
    assert "meter_id" in reason


def test_same_header_twice_is_ambiguous(tmp_path: Path) -> None:
    # Which of the two meterId columns is the reading's meter? Like camel+snake, this must reject
    # the file instead of silently loading the first and dropping the second.
    reason = _rejected(tmp_path, "dup.csv", "meterId,meterId,vehicleId\nm-1,m-2,v-1\n", CORRELATION)
    assert "meterId" in reason


def test_semicolon_separated_file_is_rejected_with_hint(tmp_path: Path) -> None:
    reason = _rejected(
        tmp_path,
        "semi.csv",
        "meterId;kwhConsumedAc;voltage;timestamp\nm;1;2;2026-01-01T00:00:00Z\n",
    )
    assert "semicolon" in reason.lower()
    reason = _rejected(tmp_path, "semi2.csv", "meter_id;vehicle_id\nm;v\n", CORRELATION)
    assert "semicolon" in reason.lower()


@pytest.mark.parametrize("missing", ["meterId", "kwhConsumedAc", "voltage", "timestamp"])
def test_missing_required_column_is_named(tmp_path: Path, missing: str) -> None:
    headers = [h for h in METER_HEADER.split(",") if h != missing]
    reason = _rejected(tmp_path, "m.csv", ",".join(headers) + "\n" + ",".join("x" * len(headers)))
    assert missing in reason
    assert "missing" in reason


def test_header_only_file_has_zero_rows(tmp_path: Path) -> None:
    raw = _read(tmp_path, "h.csv", f"{METER_HEADER}\n")
    assert raw.frame.height == 0
    assert raw.frame.columns == [ROW_NUMBER, *METER.columns]


@pytest.mark.parametrize(
    "data", [b"", b"\xef\xbb\xbf", b"\n"], ids=["zero-bytes", "only-bom", "only-newline"]
)
def test_empty_file_is_rejected(tmp_path: Path, data: bytes) -> None:
    reason = _rejected(tmp_path, "empty.csv", data)
    assert "empty" in reason


def test_empty_csv_gz_is_rejected(tmp_path: Path) -> None:
    _rejected(tmp_path, "empty.csv.gz", gzip.compress(b""))


def test_invalid_utf8_in_values_is_rejected(tmp_path: Path) -> None:
    latin1 = f"{METER_HEADER}\nZ\u00e4hler-1,1,230,2026-01-01T00:00:00Z\n".encode("latin-1")
    reason = _rejected(tmp_path, "latin1.csv", latin1)
    assert "UTF-8" in reason


def test_invalid_utf8_in_header_is_rejected(tmp_path: Path) -> None:
    # Only the (extra) header carries a Latin-1 byte; the file is still not UTF-8.
    latin1 = "meterId,vehicleId,Gr\u00f6\u00dfe\nm-1,v-1,1\n".encode("latin-1")
    reason = _rejected(tmp_path, "latin1-header.csv", latin1, CORRELATION)
    assert "UTF-8" in reason


def test_utf16_file_is_rejected_as_not_utf8(tmp_path: Path) -> None:
    # What spreadsheet tools write as "Unicode text": UTF-16 with a byte-order mark.
    reason = _rejected(tmp_path, "utf16.csv", "meterId,vehicleId\nm-1,v-1\n".encode("utf-16"))
    assert "UTF-8" in reason


def test_row_with_too_many_fields_is_rejected(tmp_path: Path) -> None:
    reason = _rejected(tmp_path, "ragged.csv", "meterId,vehicleId\nm-1,v-1,surprise\n", CORRELATION)
    assert "CSV" in reason


def test_unterminated_quote_is_rejected(tmp_path: Path) -> None:
    _rejected(tmp_path, "quote.csv", 'meterId,vehicleId\nm-1,"v-1\n', CORRELATION)


def test_binary_file_named_csv_is_rejected(tmp_path: Path) -> None:
    _rejected(tmp_path, "binary.csv", _parquet_bytes(meter_table()))


def test_trailing_blank_line_is_not_a_row(tmp_path: Path) -> None:
    # Many writers end a file with an extra newline; that blank line carries no reading.
    raw = _read(tmp_path, "trailing.csv", f"{METER_HEADER}\n{METER_ROW}\n\n")
    assert raw.frame.height == 1


def test_fewer_fields_leave_missing_values(tmp_path: Path) -> None:
    raw = _read(tmp_path, "short.csv", "meterId,vehicleId\nm-1\nm-2,v-2\n", CORRELATION)
    assert raw.frame.select("meter_id", "vehicle_id").rows() == [("m-1", None), ("m-2", "v-2")]


# --------------------------------------------------------------------------------------------
# reading Parquet
# --------------------------------------------------------------------------------------------


def test_parquet_keeps_native_types(tmp_path: Path) -> None:
    raw = _read_table(tmp_path, meter_table())
    assert raw.frame.columns == [ROW_NUMBER, *METER.columns]
    assert raw.frame.schema["kwh_consumed_ac"] == pl.Float64
    assert isinstance(raw.frame.schema["ts"], pl.Datetime)
    assert raw.frame[ROW_NUMBER].to_list() == [1, 2]
    assert raw.frame["meter_id"].to_list() == ["m-1", "m-2"]


def test_parquet_snake_case_and_extra_columns(tmp_path: Path) -> None:
    table = pa.table(
        {
            "meter_id": ["m"],
            "vehicle_id": ["v"],
            "gateway": ["gw-7"],
            "payload": pa.array([{"a": 1}]),
        }
    )
    raw = _read_table(tmp_path, table, CORRELATION)
    assert raw.source_names == {"meter_id": "meter_id", "vehicle_id": "vehicle_id"}
    assert raw.extra_columns == ["gateway", "payload"]


def test_parquet_camel_and_snake_at_once_is_rejected(tmp_path: Path) -> None:
    table = pa.table({"meterId": ["a"], "meter_id": ["b"], "vehicleId": ["v"]})
    _write_parquet(tmp_path, "correlation/a.parquet", table)
    with pytest.raises(FileRejected, match="meter_id"):
        read_landing_file(_only_file(tmp_path, CORRELATION), CORRELATION)


@pytest.mark.parametrize(
    "numeric",
    [
        pa.array([1, 2], pa.int64()),
        pa.array([1, 2], pa.uint16()),
        pa.array([1.5, 2.5], pa.float32()),
        pa.array([1, 2], pa.decimal128(10, 3)),
    ],
    ids=["int64", "uint16", "float32", "decimal"],
)
def test_parquet_numeric_types_are_accepted(tmp_path: Path, numeric: pa.Array) -> None:
    raw = _read_table(tmp_path, meter_table(kwhConsumedAc=numeric))
    assert raw.frame.height == 2


def test_parquet_string_values_are_accepted(tmp_path: Path) -> None:
    table = meter_table(
        kwhConsumedAc=pa.array(["1.5", "2.5"]),
        timestamp=pa.array(["2026-02-11T10:30:00Z", "2026-02-11T10:31:00+01:00"]),
    )
    raw = _read_table(tmp_path, table)
    assert raw.frame["ts"].to_list() == ["2026-02-11T10:30:00Z", "2026-02-11T10:31:00+01:00"]


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("timestamp", pa.array([1_700_000_000, 1_700_000_001], pa.int64())),
        ("timestamp", pa.array([TS.date(), TS.date()], pa.date32())),
        ("meterId", pa.array([1, 2], pa.int64())),
        ("meterId", pa.array([1.0, 2.0], pa.float64())),
        ("kwhConsumedAc", pa.array([True, False])),
        ("voltage", pa.array([TS, TS], pa.timestamp("us"))),
    ],
    ids=["ts-int64", "ts-date", "id-int", "id-float", "kwh-bool", "voltage-timestamp"],
)
def test_parquet_wrong_column_type_is_rejected_naming_the_column(
    tmp_path: Path, column: str, values: pa.Array
) -> None:
    _write_parquet(tmp_path, "meter/a.parquet", meter_table(**{column: values}))
    with pytest.raises(FileRejected) as caught:
        read_landing_file(_only_file(tmp_path, METER), METER)
    assert column in caught.value.reason
    assert "must be" in caught.value.reason


def test_parquet_vehicle_id_as_int_is_rejected(tmp_path: Path) -> None:
    table = pa.table({"meterId": ["m"], "vehicleId": pa.array([7], pa.int32())})
    _write_parquet(tmp_path, "correlation/a.parquet", table)
    with pytest.raises(FileRejected, match="vehicleId"):
        read_landing_file(_only_file(tmp_path, CORRELATION), CORRELATION)


def test_parquet_dictionary_encoded_ids_are_text(tmp_path: Path) -> None:
    # pandas "category" columns and many Arrow writers store repeated ids dictionary-encoded;
    # the Parquet logical type is still STRING, so the ids are text.
    table = pa.table(
        {
            "meterId": pa.array(["m-1", "m-1", "m-2"]).dictionary_encode(),
            "vehicleId": pa.array(["v-1", "v-2", "v-1"]),
        }
    )
    raw = _read_table(tmp_path, table, CORRELATION)
    assert raw.frame["meter_id"].cast(pl.String).to_list() == ["m-1", "m-1", "m-2"]


@pytest.mark.parametrize("cut", [0, 4, 100, -1, -8], ids=lambda c: f"cut{c}")
def test_truncated_parquet_is_rejected(tmp_path: Path, cut: int) -> None:
    body = _parquet_bytes(meter_table())
    reason = _rejected(tmp_path, "t.parquet", body[:cut])
    assert "Parquet" in reason


def test_parquet_with_one_corrupt_byte_is_rejected(tmp_path: Path) -> None:
    # tests/data/meter_one_corrupt_byte.parquet: a valid 20-row meter file (pyarrow 26) with the
    # byte at offset 787 changed from 0xC4 to 0xA9, as a bad transfer would leave it.
    data = (DATA_DIR / "meter_one_corrupt_byte.parquet").read_bytes()
    reason = _rejected(tmp_path, "corrupt.parquet", data)
    assert "Parquet" in reason


@pytest.mark.parametrize("tz", ["+02:00", "-05:00"])
def test_parquet_fixed_offset_timestamp_is_read(tmp_path: Path, tz: str) -> None:
    # A Parquet timestamp is accepted whatever its zone; validation converts it to UTC.
    instant = datetime(2026, 2, 11, 10, 30, tzinfo=UTC)
    table = meter_table(timestamp=pa.array([instant, instant], pa.timestamp("us", tz=tz)))
    raw = _read_table(tmp_path, table)
    assert raw.frame.height == 2
    assert isinstance(raw.frame.schema["ts"], pl.Datetime)


def test_csv_named_parquet_is_rejected(tmp_path: Path) -> None:
    reason = _rejected(tmp_path, "t.parquet", f"{METER_HEADER}\n{METER_ROW}\n")
    assert "Parquet" in reason


def test_parquet_missing_column_is_rejected(tmp_path: Path) -> None:
    table = meter_table().drop_columns(["voltage"])
    _write_parquet(tmp_path, "meter/a.parquet", table)
    with pytest.raises(FileRejected, match="voltage"):
        read_landing_file(_only_file(tmp_path, METER), METER)


# --------------------------------------------------------------------------------------------
# archive and quarantine
# --------------------------------------------------------------------------------------------

WHEN = datetime(2026, 2, 11, 10, 30, tzinfo=UTC)


def test_archive_keeps_gateway_sub_folders(tmp_path: Path) -> None:
    _write(tmp_path, "meter/gw-7/2026/a.csv", "content")
    file = _only_file(tmp_path, METER)

    moved = Path(archive_file(file, tmp_path, when=WHEN))

    assert moved == tmp_path / ARCHIVE_DIR / "meter" / "2026-02-11" / "gw-7" / "2026" / "a.csv"
    assert moved.read_text() == "content"
    assert not file.path.exists()
    # Archived files are never discovered again.
    assert find_waiting_files(tmp_path, METER, 0) == []


def test_archive_never_overwrites(tmp_path: Path) -> None:
    moved = []
    for n in range(3):
        _write(tmp_path, "vehicle/gw/a.csv", f"version {n}")
        moved.append(Path(archive_file(_only_file(tmp_path, VEHICLE), tmp_path, when=WHEN)))
    day = tmp_path / ARCHIVE_DIR / "vehicle" / "2026-02-11" / "gw"
    assert moved == [day / "a.csv", day / "a.1.csv", day / "a.2.csv"]
    assert [p.read_text() for p in moved] == ["version 0", "version 1", "version 2"]


@pytest.mark.parametrize(
    ("name", "second"),
    [("r.csv.gz", "r.1.csv.gz"), ("r.parquet", "r.1.parquet"), ("R.CSV", "R.1.CSV")],
)
def test_archive_counter_goes_before_the_suffix(tmp_path: Path, name: str, second: str) -> None:
    for _ in range(2):
        _write(tmp_path, f"meter/{name}", "x")
        last = Path(archive_file(_only_file(tmp_path, METER), tmp_path, when=WHEN))
    assert last.name == second


def test_quarantine_writes_error_report(tmp_path: Path) -> None:
    data = b"not,a,meter,file\n"
    _write(tmp_path, "meter/gw-3/bad.csv", data)
    file = _only_file(tmp_path, METER)
    digest = sha256_of(file.path)
    reason = "required column(s) meterId missing; keep calm"

    moved = quarantine_file(file, tmp_path, reason, digest)

    assert moved == tmp_path / QUARANTINE_DIR / "meter" / "gw-3" / "bad.csv"
    assert moved.read_bytes() == data
    assert not file.path.exists()
    report_path = moved.with_name("bad.csv.error.json")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["error"] == reason
    assert report["file"] == "meter/gw-3/bad.csv"
    assert report["stream"] == "meter"
    assert report["sha256"] == hashlib.sha256(data).hexdigest()
    assert report["size_bytes"] == len(data)
    assert datetime.fromisoformat(report["quarantined_at"]).tzinfo is not None
    assert find_waiting_files(tmp_path, METER, 0) == []


def test_quarantine_never_overwrites_file_or_report(tmp_path: Path) -> None:
    _write(tmp_path, "meter/bad.csv", "first")
    first = quarantine_file(_only_file(tmp_path, METER), tmp_path, "reason one", "0" * 64)
    _write(tmp_path, "meter/bad.csv", "second")
    second = quarantine_file(_only_file(tmp_path, METER), tmp_path, "reason two ü", "1" * 64)

    assert first.name == "bad.csv"
    assert second.name == "bad.1.csv"
    assert first.read_text() == "first"
    assert second.read_text() == "second"
    first_report = json.loads((first.parent / "bad.csv.error.json").read_text(encoding="utf-8"))
    second_report = json.loads((second.parent / "bad.1.csv.error.json").read_text(encoding="utf-8"))
    assert first_report["error"] == "reason one"
    assert second_report["error"] == "reason two ü"
