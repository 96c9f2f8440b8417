"""The file contract: which streams exist, which columns each carries, and how they map to tables.

Every stage reads the contract from here, so a new column is added in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

FieldKind = Literal["id", "kwh", "voltage", "soc", "battery_temp", "timestamp"]
StreamName = Literal["meter", "vehicle", "correlation"]

# Column types by kind, as PostgreSQL stores them and as Arrow must carry them: ADBC's COPY
# refuses near misses (Int64 into integer, Float32 into double precision).
POSTGRES_TYPES: dict[str, str] = {
    "id": "text",
    "kwh": "double precision",
    "voltage": "double precision",
    "soc": "double precision",
    "battery_temp": "double precision",
    "timestamp": "timestamptz",
}
ARROW_TYPES: dict[str, pa.DataType] = {
    "id": pa.string(),
    "kwh": pa.float64(),
    "voltage": pa.float64(),
    "soc": pa.float64(),
    "battery_temp": pa.float64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


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


@dataclass(frozen=True)
class Stream:
    name: StreamName
    table: str
    fields: tuple[Field, ...]
    key: tuple[str, ...]

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
