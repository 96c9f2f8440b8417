"""Validation (typing + Pandera rules) and within-file shaping (deduplication, staging table).

Files are built in pytest's tmp_path and go through the real reader; nothing is mocked.
"""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandera.polars as pa_polars
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pandera.errors import SchemaErrors

from energy_pipelines.contract import CORRELATION, MAX_ID_LENGTH, METER, VEHICLE, Stream
from energy_pipelines.landing.discover import find_waiting_files
from energy_pipelines.landing.read import ROW_NUMBER, RawFile, read_landing_file
from energy_pipelines.settings import ValidationLimits
from energy_pipelines.transform.readings import deduplicate_within_file, to_staging_table
from energy_pipelines.validate.rules import ValidatedRows, raw_values_json, validate_rows
from energy_pipelines.validate.schemas import reading_schema
from tests.helpers import meter_table

# A fixed ingestion time keeps the "not in the future" rule deterministic.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GOOD_TS = "2026-02-11T10:30:00Z"

BASELINE = {
    "meter": {"meterId": "m-1", "kwhConsumedAc": "1.5", "voltage": "230", "timestamp": GOOD_TS},
    "vehicle": {
        "vehicleId": "v-1",
        "soc": "50",
        "kwhDeliveredDc": "2.5",
        "batteryTemp": "25",
        "timestamp": GOOD_TS,
    },
    "correlation": {"meterId": "m-1", "vehicleId": "v-1"},
}
STREAM_BY_NAME = {"meter": METER, "vehicle": VEHICLE, "correlation": CORRELATION}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _quote(value: str) -> str:
    if value == "":
        return ""  # an empty field, not an empty quoted string
    return '"' + value.replace('"', '""') + '"'


def _csv(headers: list[str], rows: list[list[str]]) -> str:
    lines = [",".join(headers)] + [",".join(_quote(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def _read(root: Path, stream: Stream, data: bytes | str, name: str = "readings.csv") -> RawFile:
    path = root / stream.name / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    [file] = find_waiting_files(root, stream, settle_seconds=0)
    return read_landing_file(file, stream)


def _read_table(root: Path, stream: Stream, table: pa.Table) -> RawFile:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return _read(root, stream, buffer.getvalue(), name="readings.parquet")


def _validate(
    raw: RawFile,
    stream: Stream,
    limits: ValidationLimits | None = None,
    ingested_at: datetime = NOW,
) -> ValidatedRows:
    return validate_rows(raw, stream, limits or ValidationLimits(), ingested_at=ingested_at)


def _validate_csv(
    root: Path,
    stream: Stream,
    rows: list[dict[str, str]],
    limits: ValidationLimits | None = None,
    ingested_at: datetime = NOW,
) -> ValidatedRows:
    headers = list(BASELINE[stream.name])
    raw = _read(root, stream, _csv(headers, [[r[h] for h in headers] for r in rows]))
    return _validate(raw, stream, limits, ingested_at)


def _rules(result: ValidatedRows, row_number: int) -> list[tuple[str, str]]:
    rows = result.rejects.filter(pl.col(ROW_NUMBER) == row_number)
    return list(zip(rows["column_name"].to_list(), rows["rule"].to_list(), strict=True))


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# one rule at a time: row 1 is a good baseline, row 2 carries the value under test
# --------------------------------------------------------------------------------------------

RANGE_KWH = "must be between 0 and 10000 kWh"
RANGE_V = "must be between 0 and 2000 V"
RANGE_SOC = "must be between 0 and 100 %"
RANGE_TEMP = "must be between -50 and 120 degrees C"
FINITE = "must be a finite number"
NOT_NUMBER = "is not a number"
MISSING = "is missing"
BLANK = "must not be empty or only spaces"
TOO_LONG = f"must be at most {MAX_ID_LENGTH} characters"
CONTROL = "must not contain control characters"
NOT_ISO = "is not a valid ISO-8601 timestamp"
TOO_EARLY = "must not be before 2000-01-01"
FUTURE = "must not be more than 10 minutes after the ingestion time"

CASES: list[tuple[str, str, str, str | None]] = [
    # ---- ids ----
    ("meter", "meterId", "m-1", None),
    ("meter", "meterId", "O'Brien; DROP TABLE x;--", None),
    ("meter", "meterId", '=HYPERLINK("x")', None),
    ("meter", "meterId", "Zähler-Ω-⚡-日本-🚗", None),
    ("meter", "meterId", "  padded  ", None),
    ("meter", "meterId", "x" * MAX_ID_LENGTH, None),
    ("meter", "meterId", "é" * MAX_ID_LENGTH, None),  # 64 characters, 128 bytes
    ("meter", "meterId", "", MISSING),
    ("meter", "meterId", "   ", BLANK),
    ("meter", "meterId", "x" * (MAX_ID_LENGTH + 1), TOO_LONG),
    ("meter", "meterId", "x" * 10_000, TOO_LONG),
    ("meter", "meterId", "a\tb", CONTROL),
    ("meter", "meterId", "a\nb", CONTROL),
    ("meter", "meterId", "a\x00b", CONTROL),
    ("meter", "meterId", "a\x1bb", CONTROL),
    ("meter", "meterId", "a\x7fb", CONTROL),
    ("vehicle", "vehicleId", "WVW ZZZ 1K; --", None),
    ("vehicle", "vehicleId", "", MISSING),
    ("vehicle", "vehicleId", "\tv-1", CONTROL),
    ("vehicle", "vehicleId", "v" * 65, TOO_LONG),
    ("correlation", "meterId", "m'1", None),
    ("correlation", "vehicleId", "v\r", CONTROL),
    ("correlation", "vehicleId", " ", BLANK),
    ("correlation", "meterId", "", MISSING),
    # ---- kWh ----
    ("meter", "kwhConsumedAc", "0", None),
    ("meter", "kwhConsumedAc", "-0", None),
    ("meter", "kwhConsumedAc", "10000", None),
    ("meter", "kwhConsumedAc", "0.0001", None),
    ("meter", "kwhConsumedAc", "1e3", None),
    ("meter", "kwhConsumedAc", " 2.5 ", None),
    ("meter", "kwhConsumedAc", "-0.001", RANGE_KWH),
    ("meter", "kwhConsumedAc", "-5", RANGE_KWH),
    ("meter", "kwhConsumedAc", "10000.01", RANGE_KWH),
    ("meter", "kwhConsumedAc", "NaN", FINITE),
    ("meter", "kwhConsumedAc", "nan", FINITE),
    ("meter", "kwhConsumedAc", "inf", FINITE),
    ("meter", "kwhConsumedAc", "-inf", FINITE),
    ("meter", "kwhConsumedAc", "Infinity", FINITE),
    ("meter", "kwhConsumedAc", "1e400", FINITE),
    ("meter", "kwhConsumedAc", "1,5", NOT_NUMBER),
    ("meter", "kwhConsumedAc", "12kWh", NOT_NUMBER),
    ("meter", "kwhConsumedAc", "1 000", NOT_NUMBER),
    ("meter", "kwhConsumedAc", "true", NOT_NUMBER),
    ("meter", "kwhConsumedAc", "", MISSING),
    ("meter", "kwhConsumedAc", "   ", MISSING),
    ("vehicle", "kwhDeliveredDc", "9999.5", None),
    ("vehicle", "kwhDeliveredDc", "-1", RANGE_KWH),
    ("vehicle", "kwhDeliveredDc", "10001", RANGE_KWH),
    ("vehicle", "kwhDeliveredDc", "-inf", FINITE),
    ("vehicle", "kwhDeliveredDc", "2,5", NOT_NUMBER),
    # ---- voltage ----
    ("meter", "voltage", "0", None),
    ("meter", "voltage", "230.5", None),
    ("meter", "voltage", "2000", None),
    ("meter", "voltage", "-0.5", RANGE_V),
    ("meter", "voltage", "2000.1", RANGE_V),
    ("meter", "voltage", "230V", NOT_NUMBER),
    ("meter", "voltage", "NaN", FINITE),
    ("meter", "voltage", "", MISSING),
    # ---- state of charge ----
    ("vehicle", "soc", "0", None),
    ("vehicle", "soc", "55.5", None),
    ("vehicle", "soc", "100", None),
    ("vehicle", "soc", "-0.1", RANGE_SOC),
    ("vehicle", "soc", "100.01", RANGE_SOC),
    ("vehicle", "soc", "50%", NOT_NUMBER),
    ("vehicle", "soc", "NaN", FINITE),
    ("vehicle", "soc", "", MISSING),
    # ---- battery temperature ----
    ("vehicle", "batteryTemp", "-50", None),
    ("vehicle", "batteryTemp", "-12.5", None),
    ("vehicle", "batteryTemp", "120", None),
    ("vehicle", "batteryTemp", "-50.1", RANGE_TEMP),
    ("vehicle", "batteryTemp", "120.1", RANGE_TEMP),
    ("vehicle", "batteryTemp", "25°C", NOT_NUMBER),
    ("vehicle", "batteryTemp", "inf", FINITE),
    ("vehicle", "batteryTemp", "", MISSING),
    # ---- timestamp ----
    ("meter", "timestamp", "2026-02-11T10:30:00Z", None),
    ("meter", "timestamp", "2026-02-11T10:30:00.123Z", None),
    ("meter", "timestamp", "2026-02-11T10:30:00+02:00", None),
    ("meter", "timestamp", "2026-02-11T10:30:00-0530", None),
    ("meter", "timestamp", "2026-02-11 10:30:00Z", None),
    ("meter", "timestamp", "2026-02-11T10:30:00", None),
    ("meter", "timestamp", " 2026-02-11T10:30:00Z ", None),
    ("meter", "timestamp", "2024-02-29T00:00:00Z", None),
    ("meter", "timestamp", "2000-01-01T00:00:00Z", None),
    ("meter", "timestamp", "2026-03-01T12:10:00Z", None),  # exactly ingestion + 10 min
    ("meter", "timestamp", "2026-03-01T14:10:00+02:00", None),  # the same instant
    ("meter", "timestamp", "2026-02-30T00:00:00Z", NOT_ISO),
    ("meter", "timestamp", "2025-02-29T00:00:00Z", NOT_ISO),
    ("meter", "timestamp", "2026-02-11T25:00:00Z", NOT_ISO),
    ("meter", "timestamp", "1700000000", NOT_ISO),
    ("meter", "timestamp", "1700000000000", NOT_ISO),
    ("meter", "timestamp", "2026-02-11", NOT_ISO),
    ("meter", "timestamp", "11.02.2026 10:30:00", NOT_ISO),
    ("meter", "timestamp", "2026/02/11 10:30:00", NOT_ISO),
    ("meter", "timestamp", "yesterday", NOT_ISO),
    ("meter", "timestamp", "", MISSING),
    ("meter", "timestamp", "1970-01-01T00:00:00Z", TOO_EARLY),
    ("meter", "timestamp", "1999-12-31T23:59:59Z", TOO_EARLY),
    ("meter", "timestamp", "2000-01-01T01:00:00+02:00", TOO_EARLY),  # 1999-12-31T23:00Z
    ("meter", "timestamp", "2100-01-01T00:00:00Z", FUTURE),
    ("meter", "timestamp", "2026-03-01T12:10:01Z", FUTURE),
    ("meter", "timestamp", "2026-03-01T12:10:01", FUTURE),  # naive is UTC
    ("meter", "timestamp", "2026-03-01T14:10:01+02:00", FUTURE),
    ("vehicle", "timestamp", "1970-01-01T00:00:00Z", TOO_EARLY),
    ("vehicle", "timestamp", "1700000000", NOT_ISO),
]


@pytest.mark.parametrize(
    ("stream_name", "header", "value", "fragment"),
    CASES,
    ids=[f"{s}-{h}-{v[:20]!r}" for s, h, v, _ in CASES],
)
def test_each_rule(
    tmp_path: Path, stream_name: str, header: str, value: str, fragment: str | None
) -> None:
    stream = STREAM_BY_NAME[stream_name]
    base = BASELINE[stream_name]
    result = _validate_csv(tmp_path, stream, [base, {**base, header: value}])

    assert _rules(result, 1) == [], "the baseline row must be valid"
    if fragment is None:
        assert result.rejects.height == 0, result.rejects.to_dicts()
        assert result.valid[ROW_NUMBER].to_list() == [1, 2]
    else:
        rules = _rules(result, 2)
        # Exactly one rule per bad value: the most specific one, on the file's header.
        assert len(rules) == 1, rules
        column_name, rule = rules[0]
        assert column_name == header
        assert fragment in rule
        assert result.valid[ROW_NUMBER].to_list() == [1]
        assert result.rejected_row_count == 1


def test_valid_ids_stay_verbatim(tmp_path: Path) -> None:
    ids = [v for s, h, v, f in CASES if h.endswith("Id") and f is None and s == "meter"]
    rows = [{**BASELINE["meter"], "meterId": i} for i in ids]
    result = _validate_csv(tmp_path, METER, rows)
    assert result.rejects.height == 0
    assert result.valid["meter_id"].to_list() == ids


def test_minus_zero_is_zero(tmp_path: Path) -> None:
    rows = [{**BASELINE["meter"], "kwhConsumedAc": "-0", "voltage": "-0.0"}]
    result = _validate_csv(tmp_path, METER, rows)
    assert result.rejects.height == 0
    assert result.valid["kwh_consumed_ac"].to_list() == [0.0]
    assert result.valid["voltage"].to_list() == [0.0]


def test_numbers_are_parsed_to_their_value(tmp_path: Path) -> None:
    rows = [
        {**BASELINE["vehicle"], "soc": "55.5", "kwhDeliveredDc": "1e3", "batteryTemp": " -12.25 "}
    ]
    result = _validate_csv(tmp_path, VEHICLE, rows)
    assert result.valid.select("soc", "kwh_delivered_dc", "battery_temp").row(0) == (
        55.5,
        1000.0,
        -12.25,
    )


# --------------------------------------------------------------------------------------------
# Pandera really runs the data checks
# --------------------------------------------------------------------------------------------


def test_all_negative_kwh_are_rejected(tmp_path: Path) -> None:
    rows = [{**BASELINE["meter"], "meterId": f"m-{i}", "kwhConsumedAc": "-1"} for i in range(50)]
    result = _validate_csv(tmp_path, METER, rows)
    assert result.valid.height == 0
    assert result.rejects[ROW_NUMBER].to_list() == list(range(1, 51))
    assert set(result.rejects["column_name"]) == {"kwhConsumedAc"}
    assert set(result.rejects["rule"]) == {RANGE_KWH}
    assert result.rejected_row_count == 50


def test_schema_raises_on_a_typed_frame_with_bad_values() -> None:
    schema = reading_schema(METER, ValidationLimits(), NOW)
    assert isinstance(schema, pa_polars.DataFrameSchema)
    frame = pl.DataFrame(
        {
            "meter_id": ["m", "m", "x" * 65],
            "kwh_consumed_ac": [1.0, -1.0, 1.0],
            "voltage": [230.0, 230.0, float("nan")],
            "ts": [_utc(2026, 1, 1), _utc(1990, 1, 1), _utc(2026, 1, 1)],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    schema.validate(frame.head(1))  # the good row passes
    with pytest.raises(SchemaErrors) as caught:
        schema.validate(frame, lazy=True)
    checks = set(caught.value.failure_cases["check"].to_list())
    assert RANGE_KWH in checks
    assert any(TOO_EARLY in c for c in checks)
    assert any(FINITE in c for c in checks)
    assert TOO_LONG in checks


def test_a_row_breaking_several_rules_lists_each_once(tmp_path: Path) -> None:
    rows = [
        BASELINE["meter"],
        {"meterId": " ", "kwhConsumedAc": "-3", "voltage": "x", "timestamp": "1990-01-01T00:00Z"},
        BASELINE["meter"] | {"meterId": "m-3"},
    ]
    result = _validate_csv(tmp_path, METER, rows)
    assert sorted(_rules(result, 2)) == sorted(
        [
            ("meterId", BLANK),
            ("kwhConsumedAc", RANGE_KWH),
            (
                "voltage",
                "is not a number (use a plain decimal like 231.5, no units or commas)",
            ),
            (
                "timestamp",
                "is not a valid ISO-8601 timestamp with date and time "
                "(for example 2026-02-11T10:30:00Z)",
            ),
        ]
    )
    assert result.rejected_row_count == 1
    assert result.valid[ROW_NUMBER].to_list() == [1, 3]


def test_rejects_frame_shape(tmp_path: Path) -> None:
    rows = [BASELINE["meter"] | {"voltage": "-1"}]
    result = _validate_csv(tmp_path, METER, rows)
    assert result.rejects.schema == pl.Schema(
        {ROW_NUMBER: pl.Int64, "column_name": pl.String, "rule": pl.String}
    )
    assert result.rejects.rows() == [(1, "voltage", RANGE_V)]


def test_configured_limits_are_used(tmp_path: Path) -> None:
    limits = ValidationLimits(max_kwh_per_reading=50, max_future_minutes=0, min_year=2020)
    base = BASELINE["meter"]
    rows = [
        base | {"kwhConsumedAc": "50"},
        base | {"kwhConsumedAc": "50.5"},
        base | {"timestamp": "2026-03-01T12:00:00Z"},
        base | {"timestamp": "2026-03-01T12:00:01Z"},
        base | {"timestamp": "2019-12-31T23:59:59Z"},
    ]
    result = _validate_csv(tmp_path, METER, rows, limits=limits)
    assert result.valid[ROW_NUMBER].to_list() == [1, 3]
    assert _rules(result, 2) == [("kwhConsumedAc", "must be between 0 and 50 kWh")]
    [(_, future)] = _rules(result, 4)
    assert "must not be more than 0 minutes after the ingestion time" in future
    assert "2026-03-01T12:00:00Z" in future
    assert _rules(result, 5) == [
        ("timestamp", "must not be before 2020-01-01 (was the device clock set?)")
    ]


def test_ingestion_time_bounds_the_future(tmp_path: Path) -> None:
    rows = [BASELINE["meter"] | {"timestamp": "2026-03-01T12:30:00Z"}]
    later = _validate_csv(tmp_path, METER, rows, ingested_at=NOW + timedelta(minutes=20))
    assert later.rejects.height == 0
    (tmp_path / "meter" / "readings.csv").unlink()
    earlier = _validate_csv(tmp_path, METER, rows, ingested_at=NOW)
    assert [r for _, r in _rules(earlier, 1)] == [
        "must not be more than 10 minutes after the ingestion time (2026-03-01T12:00:00Z)"
    ]


def test_with_ingestion_time_now(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    rows = [
        BASELINE["meter"] | {"timestamp": (now - timedelta(minutes=1)).isoformat()},
        BASELINE["meter"] | {"timestamp": (now + timedelta(hours=1)).isoformat()},
    ]
    result = _validate_csv(tmp_path, METER, rows, ingested_at=now)
    assert result.valid[ROW_NUMBER].to_list() == [1]
    [(column, rule)] = _rules(result, 2)
    assert column == "timestamp"
    assert rule.startswith(FUTURE)


# --------------------------------------------------------------------------------------------
# timestamps end up in UTC
# --------------------------------------------------------------------------------------------


def test_text_timestamps_are_converted_to_utc(tmp_path: Path) -> None:
    texts = [
        "2026-02-11T10:30:00Z",
        "2026-02-11T10:30:00+02:00",
        "2026-02-11T10:30:00-05:30",
        "2026-02-11T10:30:00+0100",
        "2026-02-11T10:30:00",  # naive is UTC
        "2026-02-11 10:30:00.250",
        "2026-02-11T10:30:00.123456Z",
    ]
    rows = [BASELINE["meter"] | {"meterId": f"m{i}", "timestamp": t} for i, t in enumerate(texts)]
    result = _validate_csv(tmp_path, METER, rows)
    assert result.rejects.height == 0
    assert result.valid.schema["ts"] == pl.Datetime("us", "UTC")
    assert result.valid["ts"].to_list() == [
        _utc(2026, 2, 11, 10, 30),
        _utc(2026, 2, 11, 8, 30),
        _utc(2026, 2, 11, 16, 0),
        _utc(2026, 2, 11, 9, 30),
        _utc(2026, 2, 11, 10, 30),
        _utc(2026, 2, 11, 10, 30, 0, 250_000),
        _utc(2026, 2, 11, 10, 30, 0, 123_456),
    ]


def test_parquet_naive_timestamp_is_utc(tmp_path: Path) -> None:
    naive = datetime(2026, 2, 11, 10, 30)
    table = meter_table(timestamp=pa.array([naive, naive], pa.timestamp("ns")))
    result = _validate(_read_table(tmp_path, METER, table), METER)
    assert result.rejects.height == 0
    assert result.valid.schema["ts"] == pl.Datetime("us", "UTC")
    assert result.valid["ts"].to_list() == [_utc(2026, 2, 11, 10, 30)] * 2


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "+02:00", "+05:30"])
def test_parquet_zoned_timestamp_is_converted_to_utc(tmp_path: Path, tz: str) -> None:
    instant = _utc(2026, 2, 11, 10, 30)
    local = instant.astimezone(ZoneInfo(tz)) if "/" in tz else instant
    table = meter_table(timestamp=pa.array([local, local], pa.timestamp("ms", tz=tz)))
    raw = _read_table(tmp_path, METER, table)
    result = _validate(raw, METER)
    assert result.rejects.height == 0
    assert result.valid.schema["ts"] == pl.Datetime("us", "UTC")
    assert result.valid["ts"].to_list() == [instant, instant]


def test_parquet_timestamp_rules_apply(tmp_path: Path) -> None:
    table = meter_table(
        timestamp=pa.array([_utc(1999, 12, 31, 23), _utc(2100, 1, 1)], pa.timestamp("us", tz="UTC"))
    )
    result = _validate(_read_table(tmp_path, METER, table), METER)
    assert [(r, c) for r, c, _ in result.rejects.rows()] == [(1, "timestamp"), (2, "timestamp")]
    assert TOO_EARLY in result.rejects["rule"][0]
    assert FUTURE in result.rejects["rule"][1]


def test_parquet_text_timestamps_are_parsed(tmp_path: Path) -> None:
    table = meter_table(timestamp=pa.array(["2026-02-11T10:30:00+02:00", "1700000000"]))
    result = _validate(_read_table(tmp_path, METER, table), METER)
    assert result.valid["ts"].to_list() == [_utc(2026, 2, 11, 8, 30)]
    assert [(c, r[: len(NOT_ISO)]) for c, r in _rules(result, 2)] == [("timestamp", NOT_ISO)]


# --------------------------------------------------------------------------------------------
# Parquet values
# --------------------------------------------------------------------------------------------


def test_parquet_number_rules(tmp_path: Path) -> None:
    table = meter_table(
        kwhConsumedAc=pa.array([float("nan"), -0.0]),
        voltage=pa.array([230, 2001], pa.int32()),
    )
    result = _validate(_read_table(tmp_path, METER, table), METER)
    assert _rules(result, 1) == [("kwhConsumedAc", "must be a finite number (not NaN or infinity)")]
    assert _rules(result, 2) == [("voltage", RANGE_V)]


def test_parquet_nulls_are_missing(tmp_path: Path) -> None:
    table = meter_table(
        meterId=pa.array([None, "m-2"], pa.string()),
        kwhConsumedAc=pa.array([None, 1.0], pa.float64()),
        timestamp=pa.array([None, T1], pa.timestamp("us", tz="UTC")),
    )
    result = _validate(_read_table(tmp_path, METER, table), METER)
    assert sorted(_rules(result, 1)) == [
        ("kwhConsumedAc", MISSING),
        ("meterId", MISSING),
        ("timestamp", MISSING),
    ]
    assert result.valid[ROW_NUMBER].to_list() == [2]


def test_empty_text_id_is_reported_once(tmp_path: Path) -> None:
    # schemas.reading_schema promises "a value is reported once, with the most specific rule".
    # An empty id written as "" (CSV) or an empty Parquet string must not get two rules.
    raw = _read(tmp_path, CORRELATION, 'meterId,vehicleId\n"",v-1\nm-2,v-2\n')
    csv_result = _validate(raw, CORRELATION)
    assert len(_rules(csv_result, 1)) == 1, _rules(csv_result, 1)
    assert _rules(csv_result, 1)[0][0] == "meterId"

    (tmp_path / "correlation" / "readings.csv").unlink()
    table = pa.table({"meterId": ["", "m-2"], "vehicleId": ["v-1", "v-2"]})
    parquet_result = _validate(_read_table(tmp_path, CORRELATION, table), CORRELATION)
    assert len(_rules(parquet_result, 1)) == 1, _rules(parquet_result, 1)
    assert parquet_result.valid[ROW_NUMBER].to_list() == [2]


def test_parquet_all_null_column_is_missing(tmp_path: Path) -> None:
    table = meter_table(voltage=pa.array([None, None], pa.null()))
    result = _validate(_read_table(tmp_path, METER, table), METER)
    assert result.valid.height == 0
    assert set(result.rejects.select("column_name", "rule").rows()) == {("voltage", MISSING)}


def test_parquet_decimal_and_integer_values(tmp_path: Path) -> None:
    table = meter_table(
        kwhConsumedAc=pa.array([1, 2], pa.decimal128(10, 3)),
        voltage=pa.array([230, 231], pa.uint16()),
    )
    result = _validate(_read_table(tmp_path, METER, table), METER)
    assert result.valid.select("kwh_consumed_ac", "voltage").rows() == [(1.0, 230.0), (2.0, 231.0)]
    assert result.valid.schema["voltage"] == pl.Float64


# --------------------------------------------------------------------------------------------
# row numbers, headers and raw values as in the file
# --------------------------------------------------------------------------------------------


def test_header_only_file_validates_to_nothing(tmp_path: Path) -> None:
    raw = _read(tmp_path, VEHICLE, "vehicleId,soc,kwhDeliveredDc,batteryTemp,timestamp\n")
    result = _validate(raw, VEHICLE)
    assert result.valid.height == 0
    assert result.rejects.height == 0
    assert result.rejected_row_count == 0
    assert result.valid.columns == [ROW_NUMBER, *VEHICLE.columns]


def test_row_numbers_count_records_across_quoted_newlines(tmp_path: Path) -> None:
    data = (
        "meterId,kwhConsumedAc,voltage,timestamp\r\n"
        f'"multi\r\nline",1,230,{GOOD_TS}\r\n'
        f'"a,b",1,230,{GOOD_TS}\r\n'
        f"m-3,-1,230,{GOOD_TS}\r\n"
    )
    result = _validate(_read(tmp_path, METER, data), METER)
    assert result.rejects.rows() == [(1, "meterId", CONTROL), (3, "kwhConsumedAc", RANGE_KWH)]
    assert result.valid.select(ROW_NUMBER, "meter_id").rows() == [(2, "a,b")]


def test_column_name_is_the_header_as_in_the_file(tmp_path: Path) -> None:
    data = f"meter_id,kwh_consumed_ac, voltage ,timestamp\nm,-1,5000,{GOOD_TS}\n"
    result = _validate(_read(tmp_path, METER, data), METER)
    assert sorted(result.rejects["column_name"].to_list()) == [" voltage ", "kwh_consumed_ac"]


def test_bom_crlf_and_extra_columns_validate(tmp_path: Path) -> None:
    data = (
        "\ufeffnote,meterId,kwhConsumedAc,voltage,timestamp\r\n"
        f"hello,m-1,1.5,230,{GOOD_TS}\r\n"
        f"bye,m-2,2.5,231,{GOOD_TS}\r\n"
    )
    raw = _read(tmp_path, METER, data)
    assert raw.extra_columns == ["note"]
    result = _validate(raw, METER)
    assert result.rejects.height == 0
    assert result.valid.select("meter_id", "kwh_consumed_ac", "voltage").rows() == [
        ("m-1", 1.5, 230.0),
        ("m-2", 2.5, 231.0),
    ]


def test_raw_values_json_shows_the_row_as_sent(tmp_path: Path) -> None:
    data = (
        "meter_id,kwhConsumedAc,voltage,timestamp,extra\n"
        f"ok,1,230,{GOOD_TS},x\n"
        f'"O\'Brien; ""x""","1,5",230V,1700000000,y\n'
    )
    raw = _read(tmp_path, METER, data)
    result = _validate(raw, METER)
    assert result.valid[ROW_NUMBER].to_list() == [1]
    values = raw_values_json(raw, result.rejects[ROW_NUMBER])
    assert values[ROW_NUMBER].to_list() == [2]
    assert json.loads(values["raw_values"][0]) == {
        "meter_id": 'O\'Brien; "x"',
        "kwhConsumedAc": "1,5",
        "voltage": "230V",
        "timestamp": "1700000000",
    }


# --------------------------------------------------------------------------------------------
# valid frame shape
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [METER, VEHICLE, CORRELATION], ids=lambda s: s.name)
def test_valid_frame_is_typed_and_in_file_order(tmp_path: Path, stream: Stream) -> None:
    base = BASELINE[stream.name]
    id_header = next(iter(base))
    rows = [base | {id_header: f"id-{i:03d}"} for i in range(30)]
    rows[7] = rows[7] | {id_header: ""}
    rows[19] = rows[19] | {id_header: "bad\x01"}
    result = _validate_csv(tmp_path, stream, rows)
    expected = {
        ROW_NUMBER: pl.Int64,
        "meter_id": pl.String,
        "vehicle_id": pl.String,
        "kwh_consumed_ac": pl.Float64,
        "kwh_delivered_dc": pl.Float64,
        "voltage": pl.Float64,
        "soc": pl.Float64,
        "battery_temp": pl.Float64,
        "ts": pl.Datetime("us", "UTC"),
    }
    assert result.valid.columns == [ROW_NUMBER, *stream.columns]
    assert dict(result.valid.schema) == {c: expected[c] for c in result.valid.columns}
    assert result.valid[ROW_NUMBER].to_list() == [n for n in range(1, 31) if n not in (8, 20)]
    assert result.rejects[ROW_NUMBER].to_list() == [8, 20]


# --------------------------------------------------------------------------------------------
# deduplication within a file
# --------------------------------------------------------------------------------------------


def _meter_frame(rows: list[tuple[int, str, float, float, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            ROW_NUMBER: pl.Int64,
            "meter_id": pl.String,
            "kwh_consumed_ac": pl.Float64,
            "voltage": pl.Float64,
            "ts": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


T1 = _utc(2026, 2, 11, 10, 0)
T2 = _utc(2026, 2, 11, 10, 15)


def test_exact_repeats_are_duplicates() -> None:
    frame = _meter_frame(
        [
            (1, "a", 1.0, 230.0, T1),
            (2, "a", 1.0, 230.0, T1),
            (3, "b", 1.0, 230.0, T1),
            (4, "a", 1.0, 230.0, T1),
            (5, "a", 1.0, 230.0, T2),
        ]
    )
    result = deduplicate_within_file(frame, METER)
    assert result.duplicate_count == 2
    assert result.conflicts.height == 0
    assert result.unique[ROW_NUMBER].to_list() == [1, 3, 5]


def test_same_key_other_values_is_a_conflict_and_first_row_wins() -> None:
    frame = _meter_frame(
        [
            (1, "a", 1.0, 230.0, T1),
            (2, "a", 2.0, 230.0, T1),  # conflict with row 1
            (3, "b", 1.0, 230.0, T1),
            (4, "a", 1.0, 231.0, T1),  # conflict with row 1
            (5, "a", 2.0, 230.0, T1),  # exact repeat of row 2
            (6, "b", 1.0, 230.0, T2),  # other timestamp: other key
        ]
    )
    result = deduplicate_within_file(frame, METER)
    assert result.unique.select(ROW_NUMBER, "meter_id", "kwh_consumed_ac", "voltage").rows() == [
        (1, "a", 1.0, 230.0),
        (3, "b", 1.0, 230.0),
        (6, "b", 1.0, 230.0),
    ]
    assert result.conflicts.columns == [ROW_NUMBER, "first_row"]
    assert sorted(result.conflicts.rows()) == [(2, 1), (4, 1)]
    assert result.duplicate_count == 1
    # Every input row is accounted for exactly once.
    assert result.unique.height + result.conflicts.height + result.duplicate_count == frame.height


def test_correlation_repeats_are_only_duplicates() -> None:
    frame = pl.DataFrame(
        {
            ROW_NUMBER: [1, 2, 3, 4],
            "meter_id": ["m", "m", "m", "n"],
            "vehicle_id": ["v", "v", "w", "v"],
        }
    )
    result = deduplicate_within_file(frame, CORRELATION)
    assert result.duplicate_count == 1
    assert result.conflicts.height == 0
    assert result.unique[ROW_NUMBER].to_list() == [1, 3, 4]


def test_dedup_after_validation_of_a_file(tmp_path: Path) -> None:
    base = BASELINE["meter"]
    rows = [
        base,
        base | {"kwhConsumedAc": "-1"},  # rejected, so not a conflict
        base | {"kwhConsumedAc": "9"},  # conflict with row 1
        base,  # duplicate of row 1
        base | {"timestamp": "2026-02-11T12:30:00+02:00"},  # same instant as GOOD_TS: conflict?
        base | {"timestamp": "2026-02-11T10:30:00"},  # naive = UTC = same as row 1: duplicate
    ]
    result = _validate_csv(tmp_path, METER, rows)
    assert result.rejects[ROW_NUMBER].to_list() == [2]
    deduped = deduplicate_within_file(result.valid, METER)
    assert deduped.unique[ROW_NUMBER].to_list() == [1]
    assert sorted(deduped.conflicts.rows()) == [(3, 1)]
    # Rows 4, 5 and 6 are the same reading as row 1 once timestamps are in UTC.
    assert deduped.duplicate_count == 3


# --------------------------------------------------------------------------------------------
# staging table
# --------------------------------------------------------------------------------------------


def test_staging_table_meter_types_and_key_order() -> None:
    frame = _meter_frame(
        [
            (1, "b", 1.0, 230.0, T2),
            (2, "a", 2.0, 231.0, T2),
            (3, "b", 3.0, 232.0, T1),
            (4, "a", 4.0, 233.0, T1),
        ]
    )
    table = to_staging_table(frame, METER)
    assert table.schema == pa.schema(
        [
            pa.field("meter_id", pa.string(), nullable=False),
            pa.field("kwh_consumed_ac", pa.float64(), nullable=False),
            pa.field("voltage", pa.float64(), nullable=False),
            pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field(ROW_NUMBER, pa.int64(), nullable=False),
        ]
    )
    assert table.column("meter_id").to_pylist() == ["a", "a", "b", "b"]
    assert table.column("ts").to_pylist() == [T1, T2, T1, T2]
    assert table.column(ROW_NUMBER).to_pylist() == [4, 2, 3, 1]
    assert table.column("kwh_consumed_ac").to_pylist() == [4.0, 2.0, 3.0, 1.0]


def test_staging_table_vehicle_and_correlation_types() -> None:
    vehicle = pl.DataFrame(
        {
            ROW_NUMBER: [1],
            "vehicle_id": ["v"],
            "soc": [55.5],
            "kwh_delivered_dc": [2.0],
            "battery_temp": [-3.0],
            "ts": [T1],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    table = to_staging_table(vehicle, VEHICLE)
    assert table.schema.names == [*VEHICLE.columns, ROW_NUMBER]
    assert [f.type for f in table.schema] == [
        pa.string(),
        pa.float64(),
        pa.float64(),
        pa.float64(),
        pa.timestamp("us", tz="UTC"),
        pa.int64(),
    ]
    assert not any(f.nullable for f in table.schema)

    correlation = pl.DataFrame(
        {ROW_NUMBER: [2, 1], "meter_id": ["m", "m"], "vehicle_id": ["w", "v"]}
    )
    table = to_staging_table(correlation, CORRELATION)
    assert table.schema == pa.schema(
        [
            pa.field("meter_id", pa.string(), nullable=False),
            pa.field("vehicle_id", pa.string(), nullable=False),
            pa.field(ROW_NUMBER, pa.int64(), nullable=False),
        ]
    )
    assert table.to_pylist() == [
        {"meter_id": "m", "vehicle_id": "v", ROW_NUMBER: 1},
        {"meter_id": "m", "vehicle_id": "w", ROW_NUMBER: 2},
    ]


WEIRD_IDS = [
    "O'Brien; DROP TABLE x;--",
    '=HYPERLINK("x")',
    "Robert'); DELETE FROM meter_readings_history; --",
    "Zähler Nr. 7 – Küche",
    "電表-001",
    "🚗⚡",
    '"quoted"',
    "back\\slash",
    "  leading and trailing  ",
    "NULL",
    "$1",
    "%s",
]


def test_weird_ids_round_trip_from_csv_to_staging(tmp_path: Path) -> None:
    rows = [
        {"meterId": m, "vehicleId": v}
        for m, v in zip(WEIRD_IDS, list(reversed(WEIRD_IDS)), strict=True)
    ]
    result = _validate_csv(tmp_path, CORRELATION, rows)
    assert result.rejects.height == 0
    deduped = deduplicate_within_file(result.valid, CORRELATION)
    table = to_staging_table(deduped.unique, CORRELATION)
    by_row = {r[ROW_NUMBER]: r for r in table.to_pylist()}
    for number, row in enumerate(rows, start=1):
        assert by_row[number]["meter_id"] == row["meterId"]
        assert by_row[number]["vehicle_id"] == row["vehicleId"]


def test_weird_ids_round_trip_from_parquet_to_staging(tmp_path: Path) -> None:
    n = len(WEIRD_IDS)
    table = meter_table(
        meterId=pa.array(WEIRD_IDS),
        kwhConsumedAc=pa.array([1.0] * n),
        voltage=pa.array([230.0] * n),
        timestamp=pa.array([T1] * n, pa.timestamp("us", tz="UTC")),
    )
    result = _validate(_read_table(tmp_path, METER, table), METER)
    assert result.rejects.height == 0
    staged = to_staging_table(deduplicate_within_file(result.valid, METER).unique, METER)
    assert sorted(staged.column("meter_id").to_pylist()) == sorted(WEIRD_IDS)
    by_row = {r[ROW_NUMBER]: r["meter_id"] for r in staged.to_pylist()}
    assert [by_row[i] for i in range(1, n + 1)] == WEIRD_IDS


def test_staging_keeps_minus_zero_as_zero(tmp_path: Path) -> None:
    result = _validate_csv(tmp_path, METER, [BASELINE["meter"] | {"kwhConsumedAc": "-0"}])
    staged = to_staging_table(result.valid, METER)
    [value] = staged.column("kwh_consumed_ac").to_pylist()
    assert value == 0.0
    assert not math.isnan(value)


def test_deduplication_reports_key_order_only_when_it_sorted(tmp_path: Path) -> None:
    # Staging skips its own sort when deduplication says the rows are in key order already.
    rows = [
        {"meterId": m, "kwhConsumedAc": "0.1", "voltage": "230", "timestamp": ts}
        for m, ts in [
            ("m-2", "2026-02-11T10:01:00Z"),
            ("m-1", "2026-02-11T10:02:00Z"),
            ("m-2", "2026-02-11T10:00:00Z"),
            ("m-1", "2026-02-11T10:00:00Z"),
        ]
    ]
    for extra, expect_in_order in [([], True), ([rows[0] | {"kwhConsumedAc": "0.2"}], False)]:
        result = _validate_csv(tmp_path, METER, rows + extra)
        deduped = deduplicate_within_file(result.valid, METER)
        assert deduped.in_key_order is expect_in_order
        staged = to_staging_table(deduped.unique, METER, deduped.in_key_order)
        keys = list(zip(staged["meter_id"].to_pylist(), staged["ts"].to_pylist(), strict=True))
        assert keys == sorted(keys) and len(keys) == 4
