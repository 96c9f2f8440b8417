"""The file contract: which streams exist, which columns each carries, what each kind of value
is, and the tables each stream fills.

Every stage reads these facts from here: the landing reader (which file types a column may
arrive in), the validator (typed dtype, allowed range, the words of each rule) and the loader
(Arrow and PostgreSQL types, table names). A new column or a new rule is added in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import polars as pl
import pyarrow as pa

FieldKind = Literal["id", "kwh", "voltage", "soc", "battery_temp", "timestamp"]
StreamName = Literal["meter", "vehicle", "correlation"]
JsonType = Literal["string", "number"]

# Below this ratio of paired DC to AC a vehicle's day is `fault_suspected` (ENERGY_FAULT_THRESHOLD
# overrides it; the simulator draws its faulty vehicles below it).
FAULT_THRESHOLD = 0.85


@dataclass(frozen=True)
class Range:
    """The closed interval a number must fall in; `rule` is the words quarantine shows."""

    low: float
    high: float
    unit: str

    @property
    def rule(self) -> str:
        return f"must be between {self.low:g} and {self.high:g} {self.unit}".rstrip()


@dataclass(frozen=True)
class ValueKind:
    """One kind of value, everything the stages need to know about it.

    `postgres_type` and `arrow_type` must match exactly: ADBC's COPY refuses near misses (Int64
    into integer, Float32 into double precision). `file_dtypes` are the Parquet types a file may
    carry the value in besides text (text is typed by the validator); `file_type_words` end the
    whole-file rejection of any other type. `unparseable` is the row rule of a value that cannot
    be typed; `allowed` the range a typed number must fall in.
    """

    name: FieldKind
    postgres_type: str
    arrow_type: pa.DataType
    polars_dtype: pl.DataType
    json_type: JsonType
    file_dtypes: tuple[type[pl.DataType], ...]
    file_type_words: str
    unparseable: str
    allowed: Range | None = None

    def accepts_file_dtype(self, dtype: pl.DataType) -> bool:
        """Whether a Parquet column of `dtype` may carry this kind (text and all-null always)."""
        return dtype in (pl.String, pl.Null) or isinstance(dtype, self.file_dtypes)


NOT_FINITE = "must be a finite number (not NaN or infinity)"
_NUMBER_WORDS = "is not a number (use a plain decimal like 231.5, no units or commas)"
# Parquet types a number may arrive in; the validator casts them to Float64.
_NUMERIC_FILE_DTYPES: tuple[type[pl.DataType], ...] = (
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


def _number(name: FieldKind, allowed: Range) -> ValueKind:
    return ValueKind(
        name=name,
        postgres_type="double precision",
        arrow_type=pa.float64(),
        polars_dtype=pl.Float64(),
        json_type="number",
        file_dtypes=_NUMERIC_FILE_DTYPES,
        file_type_words="a number",
        unparseable=_NUMBER_WORDS,
        allowed=allowed,
    )


DEVICE_ID = ValueKind(
    name="id",
    postgres_type="text",
    arrow_type=pa.string(),
    polars_dtype=pl.String(),
    json_type="string",
    file_dtypes=(),
    file_type_words="text",
    unparseable="is not text",
)
# At most this many characters (validate.ids holds the id rules as Polars expressions).
MAX_ID_LENGTH = 64
# The ceiling is a setting (ENERGY_MAX_KWH_PER_READING); this is its default.
KWH = _number("kwh", Range(0.0, 10_000.0, "kWh"))
VOLTAGE = _number("voltage", Range(0.0, 2_000.0, "V"))
SOC = _number("soc", Range(0.0, 100.0, "%"))
BATTERY_TEMP = _number("battery_temp", Range(-50.0, 120.0, "degrees C"))
TIMESTAMP = ValueKind(
    name="timestamp",
    postgres_type="timestamptz",
    arrow_type=pa.timestamp("us", tz="UTC"),
    polars_dtype=pl.Datetime("us", "UTC"),
    json_type="string",
    file_dtypes=(pl.Datetime,),
    file_type_words="a timestamp or ISO-8601 text",
    unparseable=(
        "is not a valid ISO-8601 timestamp with date and time (for example 2026-02-11T10:30:00Z)"
    ),
)
# The calendar Python and Polars both handle. A timestamp outside it is clamped to its edge
# when read, so it still breaks the validator's date rules instead of failing the file.
EARLIEST_TIMESTAMP = datetime(1, 1, 2, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(9999, 12, 30, tzinfo=UTC)

VALUE_KINDS: dict[str, ValueKind] = {
    k.name: k for k in (DEVICE_ID, KWH, VOLTAGE, SOC, BATTERY_TEMP, TIMESTAMP)
}
# The same facts by kind name, for code that builds a schema or a table from them.
POSTGRES_TYPES: dict[str, str] = {k: v.postgres_type for k, v in VALUE_KINDS.items()}
ARROW_TYPES: dict[str, pa.DataType] = {k: v.arrow_type for k, v in VALUE_KINDS.items()}
POLARS_DTYPES: dict[str, pl.DataType] = {k: v.polars_dtype for k, v in VALUE_KINDS.items()}


@dataclass(frozen=True)
class Field:
    """One column of a stream: its name in files (camelCase), in snake_case, and in PostgreSQL."""

    file_name: str
    column: str
    kind: FieldKind

    @property
    def accepted_names(self) -> tuple[str, ...]:
        names = (self.file_name, _snake_case(self.file_name))
        return tuple(dict.fromkeys(names))

    @property
    def value_kind(self) -> ValueKind:
        return VALUE_KINDS[self.kind]


@dataclass(frozen=True)
class Stream:
    """A stream's columns, its history table and key, and the tables the load keeps beside
    history for later stages (readings streams only): each device's latest reading
    (`status_table`), the latest readings of each file not yet folded into it
    (`candidates_table`), and per-device hourly totals (`hourly_totals_table`)."""

    name: StreamName
    table: str
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    status_table: str | None = None
    candidates_table: str | None = None
    hourly_totals_table: str | None = None

    @property
    def columns(self) -> list[str]:
        return [f.column for f in self.fields]

    @property
    def value_columns(self) -> list[str]:
        return [c for c in self.columns if c not in self.key]

    @property
    def has_timestamp(self) -> bool:
        return any(f.kind == "timestamp" for f in self.fields)

    def field(self, column: str) -> Field:
        return next(f for f in self.fields if f.column == column)


def _snake_case(name: str) -> str:
    out: list[str] = []
    for char in name:
        if char.isupper():
            out.extend(["_", char.lower()])
        else:
            out.append(char)
    return "".join(out)


METER = Stream(
    name="meter",
    table="meter_readings_history",
    fields=(
        Field("meterId", "meter_id", "id"),
        Field("kwhConsumedAc", "kwh_consumed_ac", "kwh"),
        Field("voltage", "voltage", "voltage"),
        Field("timestamp", "ts", "timestamp"),
    ),
    key=("meter_id", "ts"),
    status_table="meter_current_status",
    candidates_table="meter_status_candidates",
    hourly_totals_table="meter_hourly_totals",
)

VEHICLE = Stream(
    name="vehicle",
    table="vehicle_readings_history",
    fields=(
        Field("vehicleId", "vehicle_id", "id"),
        Field("soc", "soc", "soc"),
        Field("kwhDeliveredDc", "kwh_delivered_dc", "kwh"),
        Field("batteryTemp", "battery_temp", "battery_temp"),
        Field("timestamp", "ts", "timestamp"),
    ),
    key=("vehicle_id", "ts"),
    status_table="vehicle_current_status",
    candidates_table="vehicle_status_candidates",
    hourly_totals_table="vehicle_hourly_totals",
)

CORRELATION = Stream(
    name="correlation",
    table="meter_vehicle_correlation",
    fields=(
        Field("meterId", "meter_id", "id"),
        Field("vehicleId", "vehicle_id", "id"),
    ),
    key=("meter_id", "vehicle_id"),
)

STREAMS: dict[str, Stream] = {s.name: s for s in (METER, VEHICLE, CORRELATION)}
# Correlations first: analytics of a day need the pairing, and it is tiny.
STREAM_ORDER: tuple[Stream, ...] = (CORRELATION, METER, VEHICLE)

# The side tables by stream name, for the streams that have them.
STATUS_TABLES: dict[str, str] = {s.name: s.status_table for s in STREAM_ORDER if s.status_table}
CANDIDATE_TABLES: dict[str, str] = {
    s.name: s.candidates_table for s in STREAM_ORDER if s.candidates_table
}
HOURLY_TOTALS_TABLES: dict[str, str] = {
    s.name: s.hourly_totals_table for s in STREAM_ORDER if s.hourly_totals_table
}
# Every stream's quarantined rows, one row per broken rule.
REJECTED_ROWS_TABLE = "rejected_rows"
